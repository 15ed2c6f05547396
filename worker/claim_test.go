package worker

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/ratelimit"
)

func testDelivery(t *testing.T, job model.Job, n uint64) *delivery {
	return &delivery{job: job, meta: &jetstream.MsgMetadata{NumDelivered: n},
		log: zaptest.NewLogger(t).With()}
}

// TestConcurrentDeliveriesSubmitOnce: two deliveries of one job at the
// same time (JetStream redelivers a live worker's job after a NATS
// restart) submit a chunk once; the second waits for the first's journal
// entry and skips it.
func TestConcurrentDeliveriesSubmitOnce(t *testing.T) {
	api := newHoldAPI()
	h := start(t, Config{}, api)
	job := model.Job{JobID: "twice", AccountName: testAccount, Devices: devices(3, 5)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- h.w.runChunk(ctx, testDelivery(t, job, 1), 0, job.Devices, nil) }()
	queuetest.Eventually(t, 5*time.Second, "the first delivery submitting", func() bool {
		return api.inside.Load() == 1
	})
	go func() { errs <- h.w.runChunk(ctx, testDelivery(t, job, 2), 0, job.Devices, nil) }()
	queuetest.Eventually(t, 10*time.Second, "the second delivery waiting on the claim", func() bool {
		return h.w.stats.ClaimWaits.Load() >= 2
	})
	if n := api.calls.Load(); n != 1 {
		t.Fatalf("%d submits while the first is in flight, want 1", n)
	}
	close(api.release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n, skipped := api.calls.Load(), h.w.stats.ChunksSkip.Load(); n != 1 || skipped != 1 {
		t.Errorf("%d submits and %d skips, want 1 and 1", n, skipped)
	}
	if _, err := h.bus.Chunks.Get(ctx, claimKey(job.JobID, 0)); err == nil {
		t.Error("the claim is still there after the chunk was settled")
	}
}

// TestDeadOwnersClaimIsTakenOver: a claim whose process is gone (no member
// key for the grace period) does not hold the chunk: a redelivery submits
// it once the grace is over.
func TestDeadOwnersClaimIsTakenOver(t *testing.T) {
	api := &fakeAPI{}
	h := startOn(t, queuetest.Bus(t), Config{}, api)
	h.w.claimGrace = 1500 * time.Millisecond
	job := model.Job{JobID: "orphan", AccountName: testAccount, Devices: devices(4, 5)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	val, _ := json.Marshal(claimEntry{Owner: "member.killed-process", Delivery: 1})
	if _, err := h.bus.Chunks.Create(ctx, claimKey(job.JobID, 0), val); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := h.w.runChunk(ctx, testDelivery(t, job, 2), 0, job.Devices, nil); err != nil {
		t.Fatal(err)
	}
	if n, took := len(api.requests()), time.Since(start); n != 1 || took < h.w.claimGrace ||
		took > 10*time.Second {
		t.Errorf("%d submits after %s, want 1 after the grace of %s", n, took, h.w.claimGrace)
	}
}

// TestOwnerBackFromAnOutageKeepsItsClaim: after a NATS outage longer than
// the members' TTL every member key has expired; a live owner's comes back
// with its next heartbeat, and its claim must hold meanwhile.
func TestOwnerBackFromAnOutageKeepsItsClaim(t *testing.T) {
	api := &fakeAPI{}
	h := startOn(t, queuetest.Bus(t), Config{}, api)
	h.w.claimGrace = 3 * time.Second
	job := model.Job{JobID: "outage", AccountName: testAccount, Devices: devices(5, 5)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner := "member.other-process"
	val, _ := json.Marshal(claimEntry{Owner: owner, Delivery: 1})
	if _, err := h.bus.Chunks.Create(ctx, claimKey(job.JobID, 0), val); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.w.runChunk(ctx, testDelivery(t, job, 2), 0, job.Devices, nil) }()
	queuetest.Eventually(t, 5*time.Second, "a look at the claim", func() bool {
		return h.w.stats.ClaimWaits.Load() >= 1
	})
	// The owner's heartbeat returns, and it settles the chunk itself.
	if _, err := h.bus.Workers.Put(ctx, owner, []byte("1")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(h.w.claimGrace + 500*time.Millisecond)
	if n := len(api.requests()); n != 0 {
		t.Fatalf("%d submits while the owner was back, want 0", n)
	}
	ce := chunkEntry{RequestID: "11111111-2222-3333-4444-555555555555", Devices: 5}
	if _, err := h.w.journalPut(ctx, job.JobID, 0, ce); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := len(api.requests()); n != 0 {
		t.Errorf("%d submits of a chunk its owner settled, want 0", n)
	}
}

// TestOwnClaimLeftBehindIsTakenOver: a claim of this process that no
// delivery holds (its release failed in an outage) does not hold the chunk
// until claimMaxAge.
func TestOwnClaimLeftBehindIsTakenOver(t *testing.T) {
	api := &fakeAPI{}
	h := startOn(t, queuetest.Bus(t), Config{}, api)
	job := model.Job{JobID: "leftover", AccountName: testAccount, Devices: devices(6, 5)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	val, _ := json.Marshal(claimEntry{Owner: h.w.owner(), Delivery: 1})
	if _, err := h.bus.Chunks.Create(ctx, claimKey(job.JobID, 0), val); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := h.w.runChunk(ctx, testDelivery(t, job, 2), 0, job.Devices, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(api.requests()); n != 1 || time.Since(start) > 5*time.Second {
		t.Errorf("%d submits after %s, want 1 at once", n, time.Since(start))
	}
}

// TestFailedReleaseIsRetried: a claim whose release failed (NATS away) is
// removed by a later round, so that it does not hold another process's
// delivery of the job until claimMaxAge; one taken over since is left.
func TestFailedReleaseIsRetried(t *testing.T) {
	h := struct{ w *Worker }{&Worker{bus: queuetest.Bus(t)}}
	ctx := context.Background()
	mine, err := h.w.bus.Chunks.Create(ctx, claimKey("left", 0), []byte(`{"owner":"me"}`))
	if err != nil {
		t.Fatal(err)
	}
	old, err := h.w.bus.Chunks.Create(ctx, claimKey("left", 1), []byte(`{"owner":"me"}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.w.bus.Chunks.Update(ctx, claimKey("left", 1), []byte(`{"owner":"other"}`), old); err != nil {
		t.Fatal(err)
	}
	h.w.unreleased = map[string]unreleased{
		claimKey("left", 0): {rev: mine, at: time.Now()},
		claimKey("left", 1): {rev: old, at: time.Now()},
	}
	h.w.retryReleases(ctx)
	if _, err := h.w.bus.Chunks.Get(ctx, claimKey("left", 0)); err == nil {
		t.Error("the claim whose release failed is still there")
	}
	if _, err := h.w.bus.Chunks.Get(ctx, claimKey("left", 1)); err != nil {
		t.Errorf("the claim taken over since was removed: %v", err)
	}
	if len(h.w.unreleased) != 0 {
		t.Errorf("still to release: %v", h.w.unreleased)
	}
}

// TestClaimOfLostCreateIsRemoved: a claim whose creation reported an error
// may have been stored all the same; the next round removes it when it is
// this process's, and leaves another process's alone.
func TestClaimOfLostCreateIsRemoved(t *testing.T) {
	lim, err := ratelimit.New(context.Background(), ratelimit.Config{RPS: 10, Burst: 1}, nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	h := struct{ w *Worker }{&Worker{bus: queuetest.Bus(t), lim: lim}}
	ctx := context.Background()
	mine, _ := json.Marshal(claimEntry{Owner: h.w.owner(), Delivery: 1})
	theirs, _ := json.Marshal(claimEntry{Owner: "member.other", Delivery: 1})
	for k, v := range map[int][]byte{0: mine, 1: theirs} {
		if _, err := h.w.bus.Chunks.Create(ctx, claimKey("lost", k), v); err != nil {
			t.Fatal(err)
		}
		h.w.leave(claimKey("lost", k), 0)
	}
	h.w.leave(claimKey("lost", 2), 0) // never stored
	h.w.retryReleases(ctx)
	if _, err := h.w.bus.Chunks.Get(ctx, claimKey("lost", 0)); err == nil {
		t.Error("our claim from a create that reported an error is still there")
	}
	if _, err := h.w.bus.Chunks.Get(ctx, claimKey("lost", 1)); err != nil {
		t.Errorf("another process's claim was removed: %v", err)
	}
	if len(h.w.unreleased) != 0 {
		t.Errorf("still to release: %v", h.w.unreleased)
	}
}
