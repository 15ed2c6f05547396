package worker

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/ratelimit"
)

// blockingAPI accepts the first chunk and blocks on every later one until
// its context ends, like a ThingSpace that hangs.
type blockingAPI struct {
	calls   atomic.Int64
	blocked atomic.Int64
}

func (b *blockingAPI) SetFallbackAttribute(ctx context.Context, req model.SetFallbackRequest) (string, error) {
	if b.calls.Add(1) == 1 {
		return "req-before-stop", nil
	}
	b.blocked.Add(1)
	<-ctx.Done()
	return "", ctx.Err()
}

func TestShutdownLeavesJobForRedelivery(t *testing.T) {
	// With MaxDeliver 1 the interrupted delivery is the last one: the job
	// is requeued as a new message instead of a Nak.
	for _, maxDeliver := range []int{DefaultMaxDeliver, 1} {
		t.Run(strconv.Itoa(maxDeliver), func(t *testing.T) { testShutdown(t, maxDeliver) })
	}
}

func testShutdown(t *testing.T, maxDeliver int) {
	bus := queuetest.Bus(t)
	log := zaptest.NewLogger(t)
	lim, err := ratelimit.New(context.Background(), ratelimit.Config{RPS: 1000, Burst: 10}, nil, "a", log)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	tr, err := progress.New(bus, log)
	if err != nil {
		t.Fatal(err)
	}
	api := &blockingAPI{}
	w, err := New(Config{ChunkSize: 5, ShutdownTimeout: 200 * time.Millisecond,
		MaxDeliver: maxDeliver}.Defaulted(),
		bus, api, lim, tr, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	job := model.Job{JobID: "job-stopped", AccountName: testAccount, Devices: devices(11, 10)}
	publish(t, bus, queue.JobSubject(testAccount), job)
	queuetest.Eventually(t, 10*time.Second, "second chunk in flight", func() bool { return api.blocked.Load() == 1 })

	// Stop: the in-flight job overruns the shutdown timeout, is cancelled
	// and given back unacknowledged.
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the shutdown timeout")
	}
	if n := jobsLeft(t, bus); n != 1 {
		t.Fatalf("%d job messages left after the stop, want 1", n)
	}

	// Another worker takes it and submits only the second chunk.
	api2 := &fakeAPI{}
	h := startOn(t, bus, Config{ChunkSize: 5}, api2)
	queuetest.Eventually(t, 10*time.Second, "job finished by the second worker", func() bool {
		return h.w.Stats().JobsDone.Load() == 1
	})
	reqs := api2.requests()
	if len(reqs) != 1 || reqs[0].Devices[0].Key() != job.Devices[5].Key() {
		t.Fatalf("second worker sent %d requests, want only the second chunk", len(reqs))
	}
	if h.w.Stats().ChunksSkip.Load() != 1 {
		t.Fatalf("skipped %d chunks, want 1", h.w.Stats().ChunksSkip.Load())
	}
}

func TestConsumerRecreatedAfterLoss(t *testing.T) {
	api := &fakeAPI{}
	h := start(t, Config{}, api)
	publish(t, h.bus, queue.JobSubject(testAccount),
		model.Job{JobID: "job-before", AccountName: testAccount, Devices: devices(12, 1)})
	queuetest.Eventually(t, 10*time.Second, "first job", func() bool { return h.w.Stats().JobsDone.Load() == 1 })

	ctx := context.Background()
	if err := h.bus.JS.DeleteConsumer(ctx, queue.StreamJobs, DefaultConsumer); err != nil {
		t.Fatal(err)
	}
	publish(t, h.bus, queue.JobSubject(testAccount),
		model.Job{JobID: "job-after", AccountName: testAccount, Devices: devices(13, 1)})
	queuetest.Eventually(t, 20*time.Second, "job after the consumer was lost", func() bool {
		return h.w.Stats().JobsDone.Load() == 2
	})
}

// TestStopEndsFetchAtOnce: a stop while the loop waits in a pull (an idle
// worker spends most of its time there) ends the pull instead of waiting
// out fetchWait.
func TestStopEndsFetchAtOnce(t *testing.T) {
	bus := queuetest.Bus(t)
	log := zaptest.NewLogger(t)
	lim, err := ratelimit.New(context.Background(), ratelimit.Config{RPS: 1000, Burst: 10}, nil, "a", log)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	tr, err := progress.New(bus, log)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{}.Defaulted(), bus, &fakeAPI{}, lim, tr, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	queuetest.Eventually(t, 10*time.Second, "a pull waiting on the server", func() bool {
		c, err := bus.JS.Consumer(ctx, queue.StreamJobs, DefaultConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumWaiting > 0
	})
	cancel()
	// The pull just seen has most of fetchWait left; the bound is loose
	// for a loaded machine but well below it.
	bound := fetchWait / 2
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(bound):
		t.Fatalf("Run still running %s after the stop: the pull was waited out", bound)
	}
}
