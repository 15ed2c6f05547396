package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/ratelimit"
)

// runOnce runs a worker with cfg on bus and returns Run's error, failing
// the test when Run does not return by itself.
func runOnce(t *testing.T, bus *queue.Bus, cfg Config) error {
	t.Helper()
	log := zaptest.NewLogger(t)
	lim, err := ratelimit.New(context.Background(), ratelimit.Config{RPS: 10, Burst: 10}, nil, "x", log)
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	tr, err := progress.New(bus, log)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(cfg.Defaulted(), bus, &fakeAPI{}, lim, tr, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = w.Run(ctx)
	if ctx.Err() != nil {
		t.Fatal("Run did not return on its own: a worker started next to an overlapping consumer")
	}
	return err
}

// TestOverlappingConsumerFailsStart: the work-queue stream delivers each
// job to one consumer only, so a second durable whose filter overlaps the
// first must stop start-up with the server's reason, never run beside it.
func TestOverlappingConsumerFailsStart(t *testing.T) {
	t.Run("second unfiltered durable", func(t *testing.T) {
		h := start(t, Config{}, &fakeAPI{})
		queuetest.Eventually(t, 5*time.Second, "the first consumer", func() bool {
			_, err := h.bus.JS.Consumer(context.Background(), queue.StreamJobs, DefaultConsumer)
			return err == nil
		})
		err := runOnce(t, h.bus, Config{Consumer: "other"})
		checkOverlapError(t, err, "other", "multiple non-filtered consumers not allowed on workqueue stream")
	})
	t.Run("filtered durable already there", func(t *testing.T) {
		bus := queuetest.Bus(t)
		if _, err := bus.JS.CreateConsumer(context.Background(), queue.StreamJobs, jetstream.ConsumerConfig{
			Durable: "audit", AckPolicy: jetstream.AckExplicitPolicy,
			FilterSubject: queue.JobSubject(testAccount),
		}); err != nil {
			t.Fatal(err)
		}
		err := runOnce(t, bus, Config{})
		checkOverlapError(t, err, DefaultConsumer, "multiple non-filtered consumers not allowed on workqueue stream")
	})
}

func checkOverlapError(t *testing.T, err error, consumer, reason string) {
	t.Helper()
	if err == nil {
		t.Fatal("Run returned nil beside an overlapping consumer")
	}
	if !errors.Is(err, ErrNoConsumer) {
		t.Errorf("error %q does not wrap ErrNoConsumer", err)
	}
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		t.Errorf("error %q does not carry the server's API error", err)
	}
	for _, want := range []string{consumer, reason} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
