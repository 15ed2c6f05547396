package progress_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

const account = "0000123456-00001"

func countTypes(es []model.Event) map[string]int {
	m := map[string]int{}
	for _, e := range es {
		m[e.Type]++
	}
	return m
}

func setup(t *testing.T, n int) (*queue.Bus, *progress.Tracker, model.Job) {
	t.Helper()
	bus := queuetest.Bus(t)
	tr, err := progress.New(bus, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, uint64(n)))
	job := model.Job{JobID: "job-1", AccountName: account}
	for range n {
		job.Devices = append(job.Devices, model.RandomDevice(r))
	}
	if err := tr.StartJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	return bus, tr, job
}

func outcome(job model.Job, i int, typ, source string) progress.Outcome {
	d := job.Devices[i]
	return progress.Outcome{
		Event: model.Event{Type: typ, JobID: job.JobID, AccountName: job.AccountName,
			RequestID: "11111111-2222-3333-4444-555555555555", Device: &d},
		Source: source,
	}
}

func TestCompletedOnceUnderRedelivery(t *testing.T) {
	bus, tr, job := setup(t, 3)
	ctx := context.Background()

	first := []progress.Outcome{
		outcome(job, 0, model.EventDeviceSucceeded, "1"),
		outcome(job, 1, model.EventDeviceFailed, "2"),
	}
	for range 3 { // the batch delivered three times
		if err := tr.Record(ctx, first); err != nil {
			t.Fatal(err)
		}
	}
	// A ThingSpace resend of device 0, with another verdict, is skipped.
	if err := tr.Record(ctx, []progress.Outcome{outcome(job, 0, model.EventDeviceFailed, "9")}); err != nil {
		t.Fatal(err)
	}
	st, err := tr.Get(ctx, job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Completed || st.Counts.Succeeded != 1 || st.Counts.Failed != 1 || st.Pending() != 1 {
		t.Fatalf("state after two devices: %+v", st)
	}

	last := append(first, outcome(job, 2, model.EventDeviceTimedOut, progress.SourceSweeper))
	for range 2 {
		if err := tr.Record(ctx, last); err != nil {
			t.Fatal(err)
		}
	}
	// StartJob again (a redelivered job) changes nothing.
	if err := tr.StartJob(ctx, job); err != nil {
		t.Fatal(err)
	}

	es := queuetest.Events(t, bus)
	got := countTypes(es)
	want := map[string]int{model.EventDeviceSucceeded: 1, model.EventDeviceFailed: 1,
		model.EventDeviceTimedOut: 1, model.EventJobCompleted: 1}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("events %v, want %v", got, want)
		}
	}
	c := es[len(es)-1]
	if c.Type != model.EventJobCompleted || c.Counts == nil ||
		*c.Counts != (model.Counts{Devices: 3, Succeeded: 1, Failed: 1, TimedOut: 1}) {
		t.Fatalf("last event %+v", c)
	}
	st, _ = tr.Get(ctx, job.JobID)
	if !st.Completed || !st.CompletedPublished {
		t.Fatalf("final state %+v", st)
	}
}

// A crash after the outcome create and before the count: the redelivery
// finds the record, publishes and counts it.
func TestCrashAfterCreateIsRepaired(t *testing.T) {
	bus, tr, job := setup(t, 1)
	ctx := context.Background()
	o := outcome(job, 0, model.EventDeviceSucceeded, "42")
	data, _ := json.Marshal(map[string]any{"source": "42", "event": o.Event})
	key := o.Event.RequestID + "." + job.Devices[0].Key()
	if _, err := bus.Outcomes.Create(ctx, key, data); err != nil {
		t.Fatal(err)
	}
	if err := tr.Record(ctx, []progress.Outcome{o}); err != nil {
		t.Fatal(err)
	}
	got := countTypes(queuetest.Events(t, bus))
	if got[model.EventDeviceSucceeded] != 1 || got[model.EventJobCompleted] != 1 {
		t.Fatalf("events %v", got)
	}
}

// Outcomes that arrive before StartJob are counted once it comes.
func TestOutcomesBeforeStart(t *testing.T) {
	bus := queuetest.Bus(t)
	tr, _ := progress.New(bus, zaptest.NewLogger(t))
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 7))
	job := model.Job{JobID: "early", AccountName: account,
		Devices: []model.Device{model.RandomDevice(r), model.RandomDevice(r)}}
	outs := []progress.Outcome{outcome(job, 0, model.EventDeviceSucceeded, "1"),
		outcome(job, 1, model.EventDeviceSucceeded, "2")}
	if err := tr.Record(ctx, outs); err != nil {
		t.Fatal(err)
	}
	if st, _ := tr.Get(ctx, job.JobID); st.Completed {
		t.Fatalf("completed before its size was known: %+v", st)
	}
	if err := tr.StartJob(ctx, job); err != nil {
		t.Fatal(err)
	}
	if got := countTypes(queuetest.Events(t, bus)); got[model.EventJobCompleted] != 1 {
		t.Fatalf("events %v", got)
	}
}

// Concurrent batches of one job, from several processes, count every device
// once and complete the job once.
func TestConcurrentBatches(t *testing.T) {
	const n = 200
	bus, tr, job := setup(t, n)
	ctx := context.Background()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				// Each device also shows up in another worker's batch.
				batch := []progress.Outcome{
					outcome(job, i, model.EventDeviceSucceeded, "s"),
					outcome(job, (i+1)%n, model.EventDeviceSucceeded, "s"),
				}
				if err := tr.Record(ctx, batch); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	st, err := tr.Get(ctx, job.JobID)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Completed || st.Counts.Succeeded != n {
		t.Fatalf("state %+v", st)
	}
	got := countTypes(queuetest.Events(t, bus))
	if got[model.EventDeviceSucceeded] != n || got[model.EventJobCompleted] != 1 {
		t.Fatalf("events %v", got)
	}
}

func TestInvalidOutcomeSkipped(t *testing.T) {
	_, tr, job := setup(t, 1)
	o := outcome(job, 0, model.EventDeviceStatus, "1")
	if err := tr.Record(context.Background(), []progress.Outcome{o}); err != nil {
		t.Fatal(err)
	}
	if tr.Stats().Invalid.Load() != 1 {
		t.Fatal("invalid outcome not counted")
	}
	if _, err := tr.Get(context.Background(), "nope"); !errors.Is(err, progress.ErrJobNotFound) {
		t.Fatalf("Get unknown: %v", err)
	}
}

// TestHasOutcomes answers for many devices at once: the recorded ones,
// the open ones, another job's same device, and an event without one.
func TestHasOutcomes(t *testing.T) {
	_, tr, job := setup(t, 150)
	ctx := context.Background()
	var outs []progress.Outcome
	for i := 0; i < 150; i += 3 {
		outs = append(outs, outcome(job, i, model.EventDeviceSucceeded, "a"))
	}
	if err := tr.Record(ctx, outs); err != nil {
		t.Fatal(err)
	}
	var asks []model.Event
	for i := range job.Devices {
		asks = append(asks, model.Event{JobID: job.JobID, Device: &job.Devices[i]})
	}
	asks = append(asks, model.Event{JobID: "job-2", Device: &job.Devices[0]}, model.Event{JobID: job.JobID})
	done, err := tr.HasOutcomes(ctx, asks)
	if err != nil {
		t.Fatal(err)
	}
	for i := range job.Devices {
		if done[i] != (i%3 == 0) {
			t.Errorf("device %d: done %v, want %v", i, done[i], i%3 == 0)
		}
	}
	if done[150] || done[151] {
		t.Errorf("another job's device or no device: %v %v, want false", done[150], done[151])
	}
}
