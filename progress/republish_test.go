package progress

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

func streamCount(t *testing.T, bus *queue.Bus) uint64 {
	return queuetest.Count(t, bus, queue.StreamResults)
}

// A redelivery long after the stream's duplicate window, of an outcome
// whose record and event were both stored before the crash, publishes
// nothing again; one whose event was never stored publishes it once.
func TestRedoAfterDuplicateWindow(t *testing.T) {
	bus := queuetest.Bus(t)
	tr, err := New(bus, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 7))
	devs := []model.Device{model.RandomDevice(r), model.RandomDevice(r)}
	outcome := func(i int) Outcome {
		return Outcome{Source: "cb-9", Event: model.Event{Type: model.EventDeviceSucceeded,
			JobID: "job-late", AccountName: "0000123456-00001", RequestID: "req-late",
			Device: &devs[i], At: time.Now().UTC()}}
	}
	// Before the crash: device 0 got steps 1 and 2, device 1 step 1 only.
	for i := range devs {
		o := outcome(i)
		data, _ := json.Marshal(outcomeRecord{Source: o.Source, Event: o.Event})
		if _, err := bus.Outcomes.Create(ctx, outcomeKey(&o.Event), data); err != nil {
			t.Fatal(err)
		}
	}
	if err := bus.PublishEvent(ctx, outcome(0).Event, ""); err != nil {
		t.Fatal(err)
	}

	// The redelivery comes ten minutes later, past the 2-minute window.
	tr.now = func() time.Time { return time.Now().UTC().Add(10 * time.Minute) }
	if err := tr.Record(ctx, []Outcome{outcome(0), outcome(1)}); err != nil {
		t.Fatal(err)
	}
	if n := tr.Stats().AlreadyPublished.Load(); n != 1 {
		t.Fatalf("%d found already published, want 1", n)
	}
	if n := streamCount(t, bus); n != 2 {
		t.Fatalf("%d events in the stream, want one per device", n)
	}
}
