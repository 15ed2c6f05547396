package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/ratelimit"
)

const testAccount = "0000123456-00001"

// fastBackoff keeps retries and redeliveries within milliseconds.
var fastBackoff = backoffPolicy{
	base:          time.Millisecond,
	cap:           5 * time.Millisecond,
	attempts:      2,
	redeliverBase: 10 * time.Millisecond,
	redeliverCap:  20 * time.Millisecond,
	// Long enough for a loaded CI machine's NATS round trips.
	persistAttempt: 2 * time.Second,
}

// fakeAPI records every request and answers with fn (or a fresh id).
type fakeAPI struct {
	mu    sync.Mutex
	calls []model.SetFallbackRequest
	n     int
	fn    func(call int, req model.SetFallbackRequest) (string, error)
}

func (f *fakeAPI) SetFallbackAttribute(ctx context.Context, req model.SetFallbackRequest) (string, error) {
	f.mu.Lock()
	f.calls = append(f.calls, req)
	call := f.n
	f.n++
	fn := f.fn
	f.mu.Unlock()
	if fn != nil {
		return fn(call, req)
	}
	return fmt.Sprintf("req-%04d", call), nil
}

func (f *fakeAPI) requests() []model.SetFallbackRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]model.SetFallbackRequest(nil), f.calls...)
}

type harness struct {
	bus *queue.Bus
	w   *Worker
	lim *ratelimit.Limiter
	tr  *progress.Tracker
}

// start runs a worker on a fresh server until the test ends.
func start(t *testing.T, cfg Config, api Submitter) *harness {
	t.Helper()
	bus := queuetest.Bus(t)
	return startOn(t, bus, cfg, api)
}

func startOn(t *testing.T, bus *queue.Bus, cfg Config, api Submitter) *harness {
	t.Helper()
	return startWith(t, bus, cfg, api, options{})
}

// options change what startWith builds.
type options struct {
	// log replaces the test logger, for tests that read the worker's log.
	log *zap.Logger
	// rate replaces the generous default budget.
	rate ratelimit.Config
	// member joins the limiter to the bus's workers bucket under this
	// name instead of running it alone.
	member string
}

func startWith(t *testing.T, bus *queue.Bus, cfg Config, api Submitter, o options) *harness {
	t.Helper()
	log := o.log
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	if o.rate == (ratelimit.Config{}) {
		o.rate = ratelimit.Config{RPS: 1000, Burst: 100}
	}
	var kv jetstream.KeyValue
	if o.member != "" {
		kv = bus.Workers
	}
	lim, err := ratelimit.New(context.Background(), o.rate, kv, o.member, log)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := progress.New(bus, log)
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.Defaulted()
	w, err := New(cfg, bus, api, lim, tr, log)
	if err != nil {
		t.Fatal(err)
	}
	w.backoff = fastBackoff
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		// A test may end while Run still starts (on a loaded machine the
		// consumer's creation can outlast a short test); what our own
		// cancel ends is not a failure.
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
		lim.Close()
	})
	return &harness{bus: bus, w: w, lim: lim, tr: tr}
}

func devices(seed uint64, n int) []model.Device {
	r := rand.New(rand.NewPCG(seed, seed+1))
	out := make([]model.Device, n)
	for i := range out {
		out[i] = model.RandomDevice(r)
	}
	return out
}

func publish(t *testing.T, bus *queue.Bus, subject string, body any) {
	t.Helper()
	data, ok := body.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := bus.JS.Publish(ctx, subject, data); err != nil {
		t.Fatalf("publishing job: %v", err)
	}
}

// jobsLeft is the number of messages still in FALLBACK_JOBS: a work-queue
// stream drops a message once it is acknowledged or terminated.
func jobsLeft(t *testing.T, bus *queue.Bus) uint64 {
	return queuetest.Count(t, bus, queue.StreamJobs)
}

func getRecord(t *testing.T, bus *queue.Bus, id string) (model.RequestRecord, bool) {
	t.Helper()
	e, err := bus.Requests.Get(context.Background(), id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return model.RequestRecord{}, false
	}
	if err != nil {
		t.Fatal(err)
	}
	var rec model.RequestRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		t.Fatal(err)
	}
	return rec, true
}

// observed returns a logger that writes to the test log and records every
// entry at info and above.
func observed(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zap.InfoLevel)
	return zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core)), logs
}

// holdAPI accepts nothing: every call blocks until its context ends or
// release is closed, like a ThingSpace that is slow to answer. It counts
// the calls in flight.
type holdAPI struct {
	release chan struct{}
	calls   atomic.Int64
	inside  atomic.Int64
}

func newHoldAPI() *holdAPI { return &holdAPI{release: make(chan struct{})} }

func (h *holdAPI) SetFallbackAttribute(ctx context.Context, req model.SetFallbackRequest) (string, error) {
	n := h.calls.Add(1)
	h.inside.Add(1)
	defer h.inside.Add(-1)
	select {
	case <-h.release:
		return fmt.Sprintf("req-held-%d", n), nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// consumerInfo returns the state of the worker's consumer.
func consumerInfo(t *testing.T, bus *queue.Bus, name string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := bus.JS.Consumer(ctx, queue.StreamJobs, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}
