package callback

import (
	"context"
	"errors"
	"fmt"
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
	es := queuetest.Events(t, bus)
	if n := len(queuetest.OfType(es, model.EventDeviceTimedOut)); n != 1 {
		t.Fatalf("%d timed out", n)
	}
	if n := len(queuetest.OfType(es, model.EventJobCompleted)); n != 1 {
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

// TestSweeperReadsEachRecordOnce checks that a sweep looks only at the
// requests that fell due since the last one, plus those it put off.
func TestSweeperReadsEachRecordOnce(t *testing.T) {
	bus := queuetest.Bus(t)
	log := zaptest.NewLogger(t)
	tr, _ := progress.New(bus, log)
	h := &harness{t: t, bus: bus, tr: tr}
	ctx := context.Background()
	const settled = 40
	for i := range settled {
		devs := devices(uint64(100+i), 1)
		h.job(fmt.Sprintf("job-o%d", i), fmt.Sprintf("req-o%d", i), devs)
		if err := tr.Record(ctx, []progress.Outcome{{Event: model.Event{Type: model.EventDeviceSucceeded,
			JobID: fmt.Sprintf("job-o%d", i), AccountName: testAccount,
			RequestID: fmt.Sprintf("req-o%d", i), Device: &devs[0]}, Source: "cb-1"}}); err != nil {
			t.Fatal(err)
		}
	}
	// ThingSpace says it is still working on this one.
	slow := h.job("job-slow", "req-slow", devices(200, 2))
	cfg := testConfig()
	cfg.Timeout = time.Minute
	sw, err := NewSweeper(cfg, bus, tr, fakeChecker{st: RequestStatus{Status: "IN_PROGRESS"}}, log)
	if err != nil {
		t.Fatal(err)
	}
	submitted := time.Unix(slow.SubmittedAt, 0)
	sweepAt := func(after time.Duration) int64 {
		t.Helper()
		sw.now = func() time.Time { return submitted.Add(after) }
		before := counters.examined.Load()
		if err := sw.Sweep(ctx); err != nil {
			t.Fatal(err)
		}
		return counters.examined.Load() - before
	}

	if n := sweepAt(0); n != 0 {
		t.Fatalf("examined %d requests before any was due", n)
	}
	if n := sweepAt(90 * time.Second); n != settled+1 {
		t.Fatalf("first due sweep examined %d, want %d", n, settled+1)
	}
	if n := sweepAt(100 * time.Second); n != 0 {
		t.Fatalf("second sweep examined %d, want 0", n)
	}
	if st, _ := tr.Get(ctx, "job-slow"); st.Counts.TimedOut != 0 {
		t.Fatalf("timed out while ThingSpace works on it: %+v", st)
	}
	// A record written now is read by the next due sweep, alone with the
	// put-off one.
	late := h.job("job-late", "req-late", devices(201, 1))
	lateAt := time.Unix(late.SubmittedAt, 0).Sub(submitted)
	if n := sweepAt(lateAt + 2*time.Minute + time.Second); n != 2 {
		t.Fatalf("examined %d, want the late and the put-off request", n)
	}
	for _, id := range []string{"job-slow", "job-late"} {
		if st, _ := tr.Get(ctx, id); !st.Completed || st.Counts.TimedOut != st.Counts.Devices {
			t.Fatalf("%s: %+v", id, st)
		}
	}
	if n := sweepAt(lateAt + 3*time.Minute); n != 0 {
		t.Fatalf("examined %d after everything settled", n)
	}
	if sw.deferred.Len() != 0 {
		t.Fatalf("%d requests still queued", sw.deferred.Len())
	}
}
