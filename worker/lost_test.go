package worker

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

var allBuckets = []string{queue.BucketRequests, queue.BucketJobs, queue.BucketChunks,
	queue.BucketOutcomes, queue.BucketWorkers}

// missing lists the streams and buckets the server does not have.
func missing(t *testing.T, bus *queue.Bus) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []string
	for _, s := range []string{queue.StreamJobs, queue.StreamCallbacks, queue.StreamResults, queue.StreamDead} {
		if _, err := bus.JS.Stream(ctx, s); err != nil {
			out = append(out, s)
		}
	}
	for _, b := range allBuckets {
		if _, err := bus.JS.KeyValue(ctx, b); err != nil {
			out = append(out, b)
		}
	}
	return out
}

// TestStreamsLostWhileRunning: the server loses the jobs stream and every
// bucket under a running worker (an operator's mistake, a store wiped).
// The worker re-creates them, says so in its log, and takes the next job
// without a restart, its limiter's membership included.
func TestStreamsLostWhileRunning(t *testing.T) {
	bus := queuetest.Bus(t)
	log, logs := observed(t)
	h := startWith(t, bus, Config{ChunkSize: 2}, &fakeAPI{}, options{log: log, member: "lost-w1"})
	publish(t, bus, queue.JobSubject(testAccount),
		model.Job{JobID: "before-loss", AccountName: testAccount, Devices: devices(61, 3)})
	queuetest.Eventually(t, 10*time.Second, "the first job", func() bool { return h.w.Stats().JobsDone.Load() == 1 })

	ctx := context.Background()
	// Buckets first: the stream's loss is what the fetch notices at once.
	for _, b := range allBuckets {
		if err := bus.JS.DeleteKeyValue(ctx, b); err != nil {
			t.Fatalf("deleting bucket %s: %v", b, err)
		}
	}
	if err := bus.JS.DeleteStream(ctx, queue.StreamJobs); err != nil {
		t.Fatal(err)
	}
	queuetest.Eventually(t, 20*time.Second, "streams and buckets re-created", func() bool {
		return len(missing(t, bus)) == 0
	})
	queuetest.Eventually(t, 5*time.Second, "the re-creation logged", func() bool {
		for _, e := range logs.FilterMessage("worker_streams_recreated").All() {
			got, _ := e.ContextMap()["missing"].([]interface{})
			var names []string
			for _, g := range got {
				names = append(names, g.(string))
			}
			if slices.Contains(names, queue.StreamJobs) && slices.Contains(names, queue.BucketChunks) {
				return true
			}
		}
		return false
	})

	publish(t, bus, queue.JobSubject(testAccount),
		model.Job{JobID: "after-loss", AccountName: testAccount, Devices: devices(62, 3)})
	queuetest.Eventually(t, 20*time.Second, "a job after the loss", func() bool { return h.w.Stats().JobsDone.Load() == 2 })
	for chunk := range 2 {
		if _, ok, err := h.w.journalGet(ctx, "after-loss", chunk); err != nil || !ok {
			t.Fatalf("journal of chunk %d after the loss: found %v, %v", chunk, ok, err)
		}
	}
	st, err := h.tr.Get(ctx, "after-loss")
	if err != nil || st.Counts.Devices != 3 {
		t.Fatalf("job state after the loss: %+v, %v", st, err)
	}
	queuetest.Eventually(t, 20*time.Second, "the limiter's membership back", func() bool {
		_, err := bus.Workers.Get(ctx, "member.lost-w1")
		return err == nil
	})
}

// TestBucketsLostWhileIdle: with only the buckets gone and no job to
// notice it, the worker's periodic check re-creates them.
func TestBucketsLostWhileIdle(t *testing.T) {
	bus := queuetest.Bus(t)
	log, logs := observed(t)
	h := startWith(t, bus, Config{}, &fakeAPI{}, options{log: log})
	h.w.checkEvery.Store(int64(100 * time.Millisecond))
	ctx := context.Background()
	for _, b := range []string{queue.BucketChunks, queue.BucketRequests} {
		if err := bus.JS.DeleteKeyValue(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	queuetest.Eventually(t, 20*time.Second, "buckets re-created", func() bool { return len(missing(t, bus)) == 0 })
	queuetest.Eventually(t, 5*time.Second, "the re-creation logged", func() bool {
		return logs.FilterMessage("worker_streams_recreated").Len() > 0
	})
	publish(t, bus, queue.JobSubject(testAccount),
		model.Job{JobID: "after-bucket-loss", AccountName: testAccount, Devices: devices(63, 3)})
	queuetest.Eventually(t, 20*time.Second, "a job after the loss", func() bool { return h.w.Stats().JobsDone.Load() == 1 })
	if _, err := bus.Chunks.Get(ctx, journalKey("after-bucket-loss", 0)); err != nil {
		t.Fatalf("journal after the loss: %v", err)
	}
}
