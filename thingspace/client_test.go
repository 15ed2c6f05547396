package thingspace_test

import (
	"context"
	"testing"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/thingspace/sim"
	"github.com/tsfallback/tsfallback/thingspace/sim/simtest"
)

func TestHappyPath(t *testing.T) {
	s, base := startSim(t, sim.Config{FailRatio: 0.3})
	c := newClient(t, clientConfig(base))
	l := simtest.NewListener(t)
	ctx := context.Background()

	register(t, c, l)
	regs, err := c.ListCallbacks(ctx, testAccount)
	if err != nil || len(regs) != 1 || regs[0].Name != thingspace.ServiceDeviceProfile ||
		regs[0].Password != "" {
		t.Fatalf("ListCallbacks = %+v, %v", regs, err)
	}

	devs := devices(1, 100)
	rid, err := c.SetFallbackAttribute(ctx, model.SetFallbackRequest{AccountName: testAccount, Devices: devs})
	if err != nil || len(rid) != 36 {
		t.Fatalf("SetFallbackAttribute = %q, %v", rid, err)
	}
	idle(t, s)

	cbs := l.Callbacks(t)
	if len(cbs) != len(devs) {
		t.Fatalf("got %d callbacks, want %d", len(cbs), len(devs))
	}
	seen := map[string]bool{}
	failed := 0
	for _, cb := range cbs {
		if cb.RequestID != rid || cb.Username != "cb-user" || cb.Password != "cb-pass" ||
			cb.CallbackCount != 1 || cb.MaxCallbackThreshold != 4 {
			t.Fatalf("bad callback %+v", cb)
		}
		switch cb.Status {
		case model.StatusFailed:
			failed++
			if cb.FaultResponse == nil || cb.FaultResponse.FaultCode == "" {
				t.Fatalf("failed callback without fault: %+v", cb)
			}
		case model.StatusSuccess:
		default:
			t.Fatalf("status %q", cb.Status)
		}
		seen[model.Device{DeviceIDs: cb.DeviceIDs}.Key()] = true
	}
	for _, d := range devs {
		if !seen[d.Key()] {
			t.Fatalf("no callback for %s", d.Key())
		}
	}
	if failed == 0 || failed == len(devs) {
		t.Fatalf("%d of %d failed with FailRatio 0.3", failed, len(devs))
	}

	st, err := c.RequestStatus(ctx, testAccount, rid)
	if err != nil || st.RequestID != rid || len(st.SubRequests) != len(devs) {
		t.Fatalf("RequestStatus = %+v, %v", st, err)
	}

	if err := c.DeleteCallback(ctx, testAccount, thingspace.ServiceDeviceProfile); err != nil {
		t.Fatalf("DeleteCallback: %v", err)
	}
	if regs, err := c.ListCallbacks(ctx, testAccount); err != nil || len(regs) != 0 {
		t.Fatalf("ListCallbacks after delete = %+v, %v", regs, err)
	}
	if err := c.DeleteCallback(ctx, testAccount, thingspace.ServiceDeviceProfile); !thingspace.IsPermanent(err) {
		t.Fatalf("second delete: %v, want permanent", err)
	}

	stats := s.Stats()
	if stats.Logins != 1 || stats.TokensIssued != 1 || stats.DevicesSubmitted != 100 ||
		stats.CallbacksSent != 100 || stats.CallbacksAcknowledged != 100 {
		t.Fatalf("stats = %+v", stats)
	}
	if stats.Requests["setfallbackattribute"]["200"] != 1 {
		t.Fatalf("requests = %v", stats.Requests)
	}
}
