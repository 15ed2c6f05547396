package callback

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

// TestStatusNeverFollowsFinal: consumers read the stream in order, so a
// device's device.status must come before its final event, and a status
// that arrives after the final one must not reopen the device.
func TestStatusNeverFollowsFinal(t *testing.T) {
	h := startCorrelator(t, testConfig(), zaptest.NewLogger(t))
	staleBefore := counters.staleStatus.Load() // package-wide counter
	devs := devices(50, 3)
	h.job("job-o", "req-o", devs)

	// A status and its final callback stored back to back: one batch.
	h.callback(callbackBody("req-o", devs[0], "WARNING"))
	h.callback(callbackBody("req-o", devs[0], model.StatusSuccess))
	h.waitEvents(model.EventDeviceSucceeded, 1)

	// A status overtaken by the final callback, as out-of-order delivery
	// or a resend produces.
	h.callback(callbackBody("req-o", devs[1], model.StatusFailed))
	h.waitEvents(model.EventDeviceFailed, 1)
	h.callback(callbackBody("req-o", devs[1], "WARNING"))

	h.callback(callbackBody("req-o", devs[2], model.StatusSuccess))
	h.waitEvents(model.EventJobCompleted, 1)
	queuetest.Eventually(t, 10*time.Second, "the stale status to be settled", func() bool {
		return counters.staleStatus.Load() > staleBefore && streamPending(t, h.bus) == 0
	})

	final := map[string]bool{}
	statuses := 0
	for _, e := range queuetest.Events(t, h.bus) {
		switch {
		case model.IsFinalDevice(e.Type):
			final[e.Device.Key()] = true
		case e.Type == model.EventDeviceStatus:
			statuses++
			if final[e.Device.Key()] {
				t.Fatalf("device.status for %s after its final event", e.Device.Key())
			}
		}
	}
	if statuses != 1 {
		t.Fatalf("%d device.status events, want 1 (the one before its final)", statuses)
	}
}

// TestResubmittedChunkOneFinalEvent: a chunk submitted twice (a crash
// between ThingSpace's answer and the journal) has two request records and
// two sets of callbacks; each device still gets one final event.
func TestResubmittedChunkOneFinalEvent(t *testing.T) {
	h := startCorrelator(t, testConfig(), zaptest.NewLogger(t))
	devs := devices(60, 3)
	first := h.job("job-r", "req-r1", devs)
	second := first
	second.RequestID = "req-r2"
	h.putRecord(second)
	for _, d := range devs {
		h.callback(callbackBody("req-r1", d, model.StatusSuccess))
		h.callback(callbackBody("req-r2", d, model.StatusFailed))
	}
	h.waitEvents(model.EventJobCompleted, 1)
	queuetest.Eventually(t, 10*time.Second, "every callback to be settled", func() bool {
		return streamPending(t, h.bus) == 0
	})
	finals := map[string]int{}
	for _, e := range queuetest.Events(t, h.bus) {
		if model.IsFinalDevice(e.Type) {
			finals[e.Device.Key()]++
		}
	}
	if len(finals) != len(devs) {
		t.Fatalf("%d devices with a final event, want %d", len(finals), len(devs))
	}
	for k, n := range finals {
		if n != 1 {
			t.Errorf("device %s: %d final events, want 1", k, n)
		}
	}
}

// streamPending is how many stored callbacks the correlator has not
// acknowledged yet.
func streamPending(t *testing.T, bus *queue.Bus) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := bus.JS.Consumer(ctx, queue.StreamCallbacks, ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int(info.NumPending) + info.NumAckPending
}
