package results_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/results"
)

const acct = "0000123456-00001"

func TestReadFiltersAndResumes(t *testing.T) {
	bus := queuetest.Bus(t)
	ctx := context.Background()
	for _, e := range []model.Event{
		{Type: model.EventJobAccepted, JobID: "a", AccountName: acct},
		{Type: model.EventJobAccepted, JobID: "b", AccountName: acct},
		{Type: model.EventJobCompleted, JobID: "a", AccountName: acct},
		{Type: model.EventJobAccepted, JobID: "c", AccountName: "0000999999-00001"},
	} {
		if err := bus.PublishEvent(ctx, e, ""); err != nil {
			t.Fatal(err)
		}
	}
	read := func(o results.Options) []model.Event {
		t.Helper()
		var got []model.Event
		o.IdleWait = 200 * time.Millisecond
		err := results.Read(ctx, bus.JS, o, func(e model.Event, _ []byte) error {
			got = append(got, e)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := read(results.Options{}); len(got) != 4 {
		t.Fatalf("all: %d events", len(got))
	}
	if got := read(results.Options{Account: acct, JobID: "a"}); len(got) != 2 {
		t.Fatalf("job a: %d events", len(got))
	}
	if got := read(results.Options{Types: []string{model.EventJobCompleted}}); len(got) != 1 || got[0].JobID != "a" {
		t.Fatalf("type filter: %+v", got)
	}

	// A durable reader resumes after what it acknowledged.
	if got := read(results.Options{Durable: "downstream"}); len(got) != 4 {
		t.Fatalf("durable first read: %d", len(got))
	}
	if err := bus.PublishEvent(ctx, model.Event{Type: model.EventJobAccepted, JobID: "d", AccountName: acct}, ""); err != nil {
		t.Fatal(err)
	}
	if got := read(results.Options{Durable: "downstream"}); len(got) != 1 || got[0].JobID != "d" {
		t.Fatalf("durable resume: %+v", got)
	}
}

func TestReadOnEmptyStreamEnds(t *testing.T) {
	bus := queuetest.Bus(t)
	err := results.Read(context.Background(), bus.JS, results.Options{IdleWait: 100 * time.Millisecond},
		func(model.Event, []byte) error { t.Fatal("no event expected"); return nil })
	if err != nil {
		t.Fatal(err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []results.Options{{Account: "nope"}, {JobID: "a.b"}, {Durable: "x y"}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v: want an error", o)
		}
	}
}

// TestReadEndsPromptly checks the two ways a read ends: without Follow
// right after the last stored event (no idle wait), and with Follow as
// soon as ctx ends.
func TestReadEndsPromptly(t *testing.T) {
	bus := queuetest.Bus(t)
	ctx := context.Background()
	const idle = 5 * time.Second // far above what either case may take
	start := time.Now()
	err := results.Read(ctx, bus.JS, results.Options{IdleWait: idle},
		func(model.Event, []byte) error { return nil })
	if err != nil || time.Since(start) > idle/2 {
		t.Fatalf("empty read: err %v after %s", err, time.Since(start))
	}
	if err := bus.PublishEvent(ctx, model.Event{Type: model.EventJobAccepted, JobID: "a",
		AccountName: acct}, ""); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	n := 0
	err = results.Read(ctx, bus.JS, results.Options{IdleWait: idle},
		func(model.Event, []byte) error { n++; return nil })
	if err != nil || n != 1 || time.Since(start) > idle/2 {
		t.Fatalf("read of one event: %d events, err %v after %s", n, err, time.Since(start))
	}

	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- results.Read(fctx, bus.JS, results.Options{Follow: true, IdleWait: idle},
			func(model.Event, []byte) error { cancel(); return nil })
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("follow ended with %v", err)
		}
	case <-time.After(idle / 2):
		t.Fatal("follow did not end when its context did")
	}
}

func TestDurableKeepsItsFilterAndStart(t *testing.T) {
	bus := queuetest.Bus(t)
	ctx := context.Background()
	if err := bus.PublishEvent(ctx, model.Event{Type: model.EventJobAccepted, JobID: "a", AccountName: acct}, ""); err != nil {
		t.Fatal(err)
	}
	none := func(model.Event, []byte) error { return nil }
	if err := results.Read(ctx, bus.JS, results.Options{Durable: "f1", JobID: "a", OnlyNew: true}, none); err != nil {
		t.Fatal(err)
	}
	// Resuming without --new is fine: the start was set when it was made.
	if err := results.Read(ctx, bus.JS, results.Options{Durable: "f1", JobID: "a"}, none); err != nil {
		t.Fatalf("resume without --new: %v", err)
	}
	err := results.Read(ctx, bus.JS, results.Options{Durable: "f1", JobID: "b"}, none)
	if err == nil || !strings.Contains(err.Error(), "use the filters it was made with") {
		t.Fatalf("other filter: got %v", err)
	}
}
