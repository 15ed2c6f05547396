package callback

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

type fakeChecker struct {
	st  RequestStatus
	err error
}

func (f fakeChecker) RequestStatus(context.Context, string, string) (RequestStatus, error) {
	return f.st, f.err
}

func TestSweeperTimesOut(t *testing.T) {
	bus := queuetest.Bus(t)
	log := zaptest.NewLogger(t)
	tr, _ := progress.New(bus, log)
	h := &harness{t: t, bus: bus, tr: tr}
	devs := devices(20, 3)
	rec := h.job("job-s", "req-s", devs)

	// Device 0 has its callback; the checker knows device 1 succeeded;
	// device 2 is never heard of.
	if err := tr.Record(context.Background(), []progress.Outcome{{
		Event:  model.Event{Type: model.EventDeviceSucceeded, JobID: "job-s", AccountName: testAccount, RequestID: "req-s", Device: &devs[0]},
		Source: "cb-1",
	}}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Timeout = time.Minute
	checker := fakeChecker{st: RequestStatus{Status: "PENDING", Devices: []DeviceStatus{
		{IDs: []model.DeviceID{{Kind: "eid", ID: devs[1].ID("eid")}}, Status: "Success"},
	}}}
	sw, err := NewSweeper(cfg, bus, tr, checker, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := sw.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := tr.Get(ctx, "job-s"); st.Completed {
		t.Fatal("timed out before the timeout")
	}

	sw.now = func() time.Time { return time.Unix(rec.SubmittedAt, 0).Add(3 * time.Minute) }
	for range 2 { // a second sweep finds nothing more to do
		if err := sw.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := tr.Get(ctx, "job-s")
	if !st.Completed || st.Counts != (model.Counts{Devices: 3, Succeeded: 2, TimedOut: 1}) {
		t.Fatalf("state %+v", st)
	}
	es := results(t, bus)
	if n := len(ofType(es, model.EventDeviceTimedOut)); n != 1 {
		t.Fatalf("%d timed out", n)
	}
	if n := len(ofType(es, model.EventJobCompleted)); n != 1 {
		t.Fatalf("%d completed", n)
	}

	// With no checker answer, overdue devices simply time out.
	rec2 := h.job("job-t", "req-t", devices(21, 2))
	sw.checker = fakeChecker{err: errors.New("down")}
	sw.now = func() time.Time { return time.Unix(rec2.SubmittedAt, 0).Add(2 * time.Minute) }
	if err := sw.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := tr.Get(ctx, "job-t"); st.Counts.TimedOut != 2 || !st.Completed {
		t.Fatalf("state %+v", st)
	}
}
