package worker

import (
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/thingspace"
)

// TestLongRetryAfterReschedules: a 429 asking for ten minutes hands the
// job back with that delay instead of holding its slot and message, and
// neither it nor the next job is sent again while the pause lasts.
func TestLongRetryAfterReschedules(t *testing.T) {
	api := &fakeAPI{fn: func(call int, req model.SetFallbackRequest) (string, error) {
		if call == 0 {
			return "", &thingspace.Error{Kind: thingspace.KindRateLimited, Status: 429,
				RetryAfter: 10 * time.Minute}
		}
		return "req-during-pause", nil
	}}
	bus := queuetest.Bus(t)
	for _, id := range []string{"paused-a", "paused-b"} {
		publish(t, bus, queue.JobSubject(testAccount), model.Job{JobID: id, AccountName: testAccount,
			Devices: devices(71, 3)})
	}
	log, logs := observed(t)
	// One slot: the second job could only be fetched after the first is
	// handed back, that is during the pause.
	h := startWith(t, bus, Config{Concurrency: 1, ShutdownTimeout: 100 * time.Millisecond}, api,
		options{log: log})
	queuetest.Eventually(t, 10*time.Second, "the job handed back and the fetch loop paused", func() bool {
		return h.w.Stats().JobsRetried.Load() == 1 && h.w.Stats().FetchPauses.Load() >= 1
	})
	if n := len(api.requests()); n != 1 {
		t.Fatalf("%d requests, want 1: nothing may be sent during the pause", n)
	}
	if p := time.Until(h.lim.PausedUntil()); p < 9*time.Minute {
		t.Fatalf("deployment paused for %s more, want about 10 minutes", p)
	}
	retries := logs.FilterMessage("worker_job_retry_later").All()
	if len(retries) != 1 {
		t.Fatalf("%d worker_job_retry_later entries, want 1", len(retries))
	}
	if d, _ := retries[0].ContextMap()["delay"].(time.Duration); d < 9*time.Minute {
		t.Fatalf("job handed back with a delay of %s, want the pause's 10 minutes", d)
	}
	info := consumerInfo(t, bus, DefaultConsumer)
	if info.Delivered.Consumer != 1 || info.NumPending != 1 || info.NumRedelivered != 0 {
		t.Fatalf("consumer: %d deliveries, %d jobs never delivered, %d redelivered; "+
			"want 1 delivery, the second job untouched", info.Delivered.Consumer, info.NumPending,
			info.NumRedelivered)
	}
	es := queuetest.Events(t, bus)
	if n := len(queuetest.OfType(es, model.EventDeviceFailed)) + len(queuetest.OfType(es, model.EventJobFailed)); n != 0 {
		t.Fatalf("%d failure events: a 429 is never a device failure", n)
	}
	if st := h.w.Stats(); st.Requests.Load() != 0 || st.RateLimited.Load() != 1 {
		t.Fatalf("stats: %d requests accepted, %d rate limited", st.Requests.Load(), st.RateLimited.Load())
	}
}
