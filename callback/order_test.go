package callback

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/model"
)

// TestStatusNeverFollowsFinal: consumers read the stream in order, so a
// device's device.status must come before its final event, and a status
// that arrives after the final one must not reopen the device.
func TestStatusNeverFollowsFinal(t *testing.T) {
	h := startCorrelator(t, testConfig(), zaptest.NewLogger(t))
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
	eventually(t, 10*time.Second, "the stale status to be settled", func() bool {
		return counters.staleStatus.Load() >= 1
	})

	final := map[string]bool{}
	statuses := 0
	for _, e := range results(t, h.bus) {
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
