package worker

import (
	"context"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/thingspace"
)

// TestLoginStoppedHalts: once the client gives up logging in, the worker
// stops fetching and hands its job back instead of spending every job's
// deliveries and failing their devices on a credentials problem.
func TestLoginStoppedHalts(t *testing.T) {
	api := &fakeAPI{fn: func(int, model.SetFallbackRequest) (string, error) {
		return "", &thingspace.Error{Op: "login", Kind: thingspace.KindAuth, Status: 401,
			Err: thingspace.ErrLoginStopped}
	}}
	h := start(t, Config{Concurrency: 1, MaxDeliver: 2}, api)
	for i, id := range []string{"halt-a", "halt-b", "halt-c"} {
		publish(t, h.bus, queue.JobSubject(testAccount), model.Job{JobID: id, AccountName: testAccount,
			Devices: devices(uint64(i+1), 3)})
	}
	queuetest.Eventually(t, 10*time.Second, "the job handed back", func() bool {
		return h.w.Stats().JobsHandedBack.Load() == 1
	})
	if !h.w.Halted() {
		t.Fatal("worker not halted after ErrLoginStopped")
	}
	if n := len(api.requests()); n != 1 {
		t.Fatalf("%d requests after the client stopped, want 1", n)
	}
	if n := jobsLeft(t, h.bus); n != 3 {
		t.Fatalf("%d jobs left in the stream, want all 3", n)
	}
	es := queuetest.Events(t, h.bus)
	if n := len(queuetest.OfType(es, model.EventDeviceFailed)) + len(queuetest.OfType(es, model.EventJobFailed)); n != 0 {
		t.Fatalf("%d failure events, want none: a login problem is not the devices'", n)
	}
	// The other jobs were never fetched.
	cons, err := h.bus.JS.Consumer(context.Background(), queue.StreamJobs, DefaultConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 2 || info.Delivered.Consumer != 1 {
		t.Fatalf("consumer: %d jobs pending, %d deliveries; want 2 never delivered, 1 delivery",
			info.NumPending, info.Delivered.Consumer)
	}
	if n := h.w.Stats().JobsHandedBack.Load(); n != 1 {
		t.Fatalf("%d jobs handed back, want 1", n)
	}
	if st := h.w.Stats(); st.JobsFailed.Load() != 0 || st.Requests.Load() != 0 {
		t.Fatalf("stats after halt: failed %d, requests %d", st.JobsFailed.Load(), st.Requests.Load())
	}
}
