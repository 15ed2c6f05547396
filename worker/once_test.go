package worker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/thingspace"
)

// shortWindow is the smallest duplicate window the server accepts: tests
// get past it quickly and without guessing how long to wait.
const shortWindow = 100 * time.Millisecond

// shortWindowBus is a bus whose streams drop a repeated message id only
// within shortWindow.
func shortWindowBus(t *testing.T) *queue.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := queue.Open(ctx, queue.Config{URL: queuetest.Server(t), DuplicateWindow: shortWindow},
		t.Name(), zap.NewNop())
	if err != nil {
		t.Fatalf("opening bus: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// waitWindowPassed returns once FALLBACK_RESULTS no longer drops a repeat
// of any message id published before the call: a probe id published now
// is polled until the stream takes it again.
func waitWindowPassed(t *testing.T, bus *queue.Bus) {
	t.Helper()
	ctx := context.Background()
	msg := func() *nats.Msg {
		m := nats.NewMsg(queue.ResultSubject(testAccount, "window-probe"))
		m.Data = []byte(`{"type":"probe","jobId":"window-probe"}`)
		m.Header.Set(jetstream.MsgIDHeader, "window-probe-"+t.Name())
		return m
	}
	if _, err := bus.JS.PublishMsg(ctx, msg()); err != nil {
		t.Fatal(err)
	}
	queuetest.Eventually(t, 10*time.Second, "the duplicate window to pass", func() bool {
		ack, err := bus.JS.PublishMsg(ctx, msg())
		if err != nil {
			t.Fatal(err)
		}
		return !ack.Duplicate
	})
}

// jobEvents returns the events of one job, by type.
func jobEvents(t *testing.T, bus *queue.Bus, jobID string) map[string][]model.Event {
	t.Helper()
	out := map[string][]model.Event{}
	for _, e := range queuetest.Events(t, bus) {
		if e.JobID == jobID {
			out[e.Type] = append(out[e.Type], e)
		}
	}
	return out
}

// perRequest counts request.submitted events by requestId.
func perRequest(es []model.Event) map[string]int {
	out := map[string]int{}
	for _, e := range es {
		out[e.RequestID]++
	}
	return out
}

// TestEventsOnceAfterWindow: a job redelivered after the stream's
// duplicate window (its second chunk failed the first delivery, which
// ended after the window) publishes job.accepted and the first chunk's
// request.submitted only once.
func TestEventsOnceAfterWindow(t *testing.T) {
	bus := shortWindowBus(t)
	job := model.Job{JobID: "job-late-redelivery", AccountName: testAccount, Devices: devices(71, 10)}
	second := job.Devices[5].Key()
	inside := make(chan struct{})
	release := make(chan struct{})
	var secondCalls atomic.Int64
	api := &fakeAPI{fn: func(call int, req model.SetFallbackRequest) (string, error) {
		if req.Devices[0].Key() != second {
			return "req-first", nil
		}
		switch secondCalls.Add(1) {
		case 1:
			close(inside)
			<-release
			fallthrough
		case 2: // both tries of the first delivery fail
			return "", &thingspace.Error{Kind: thingspace.KindTransient, Status: 503}
		}
		return "req-second", nil
	}}
	h := startOn(t, bus, Config{ChunkSize: 5}, api)
	publish(t, bus, queue.JobSubject(testAccount), job)
	<-inside
	waitWindowPassed(t, bus)
	close(release)
	queuetest.Eventually(t, 10*time.Second, "job acknowledged", func() bool { return h.w.Stats().JobsDone.Load() == 1 })
	if h.w.Stats().JobsRetried.Load() != 1 {
		t.Fatalf("retried %d times, want 1", h.w.Stats().JobsRetried.Load())
	}

	es := jobEvents(t, bus, job.JobID)
	if n := len(es[model.EventJobAccepted]); n != 1 {
		t.Errorf("%d job.accepted events, want 1", n)
	}
	if got := perRequest(es[model.EventRequestSubmitted]); len(got) != 2 || got["req-first"] != 1 ||
		got["req-second"] != 1 {
		t.Errorf("request.submitted per request: %v, want one each", got)
	}
}

// TestRepublishedJobAfterWindow: the same job published again (same id,
// same devices) after the window submits nothing and publishes nothing.
func TestRepublishedJobAfterWindow(t *testing.T) {
	bus := shortWindowBus(t)
	api := &fakeAPI{}
	h := startOn(t, bus, Config{ChunkSize: 5}, api)
	job := model.Job{JobID: "job-again", AccountName: testAccount, Devices: devices(72, 8)}
	publish(t, bus, queue.JobSubject(testAccount), job)
	queuetest.Eventually(t, 10*time.Second, "first job", func() bool { return h.w.Stats().JobsDone.Load() == 1 })
	waitWindowPassed(t, bus)
	publish(t, bus, queue.JobSubject(testAccount), job)
	queuetest.Eventually(t, 10*time.Second, "second job", func() bool { return h.w.Stats().JobsDone.Load() == 2 })

	if n := len(api.requests()); n != 2 {
		t.Errorf("%d requests, want 2", n)
	}
	es := jobEvents(t, bus, job.JobID)
	if n := len(es[model.EventJobAccepted]); n != 1 {
		t.Errorf("%d job.accepted events, want 1", n)
	}
	if got := perRequest(es[model.EventRequestSubmitted]); len(got) != 2 || got["req-0000"] != 1 ||
		got["req-0001"] != 1 {
		t.Errorf("request.submitted per request: %v, want one each", got)
	}
	if h.w.Stats().JobsAccepted.Load() != 1 {
		t.Errorf("JobsAccepted %d, want 1", h.w.Stats().JobsAccepted.Load())
	}
}

func putJSON(t *testing.T, bus *queue.Bus, key string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.Chunks.Create(context.Background(), key, data); err != nil {
		t.Fatal(err)
	}
}

// TestCrashBetweenRecordAndEvent: a delivery that died after an
// acceptance record or a journal entry was stored and before it was
// marked published leaves its event to the next delivery, which comes
// after the window: the event is published when the stream lacks it, not
// when it has it. Journal entries of older workers, without digest or
// mark, keep working.
func TestCrashBetweenRecordAndEvent(t *testing.T) {
	bus := shortWindowBus(t)
	ctx := context.Background()
	at := time.Now().UTC()

	// Job A: accepted, event lost; chunk 0 journaled by an older worker
	// with its event out, chunk 1 journaled with its event lost.
	a := model.Job{JobID: "job-crash-a", AccountName: testAccount, Devices: devices(73, 4)}
	putJSON(t, bus, acceptKey(a.JobID), acceptEntry{Digest: digest(a.Devices), Devices: 4, At: at})
	putJSON(t, bus, journalKey(a.JobID, 0), map[string]any{"requestId": "req-a0", "devices": 2, "at": at})
	putJSON(t, bus, journalKey(a.JobID, 1), map[string]any{"requestId": "req-a1", "devices": 2, "at": at})
	if err := bus.PublishEvent(ctx, model.Event{Type: model.EventRequestSubmitted, JobID: a.JobID,
		AccountName: testAccount, RequestID: "req-a0", Devices: a.Devices[:2]}, ""); err != nil {
		t.Fatal(err)
	}
	// Job B: accepted with its event out, nothing submitted.
	b := model.Job{JobID: "job-crash-b", AccountName: testAccount, Devices: devices(74, 2)}
	putJSON(t, bus, acceptKey(b.JobID), acceptEntry{Digest: digest(b.Devices), Devices: 2, At: at})
	if err := bus.PublishEvent(ctx, model.Event{Type: model.EventJobAccepted, JobID: b.JobID,
		AccountName: testAccount}, ""); err != nil {
		t.Fatal(err)
	}
	waitWindowPassed(t, bus)

	api := &fakeAPI{}
	h := startOn(t, bus, Config{ChunkSize: 2}, api)
	publish(t, bus, queue.JobSubject(testAccount), a)
	publish(t, bus, queue.JobSubject(testAccount), b)
	queuetest.Eventually(t, 10*time.Second, "both jobs", func() bool { return h.w.Stats().JobsDone.Load() == 2 })

	if reqs := api.requests(); len(reqs) != 1 || reqs[0].Devices[0].Key() != b.Devices[0].Key() {
		t.Fatalf("%d requests, want only job B's", len(reqs))
	}
	ea := jobEvents(t, bus, a.JobID)
	if n := len(ea[model.EventJobAccepted]); n != 1 {
		t.Errorf("job A: %d job.accepted events, want 1", n)
	}
	if got := perRequest(ea[model.EventRequestSubmitted]); len(got) != 2 || got["req-a0"] != 1 ||
		got["req-a1"] != 1 {
		t.Errorf("job A: request.submitted per request: %v, want one each", got)
	}
	eb := jobEvents(t, bus, b.JobID)
	if n := len(eb[model.EventJobAccepted]); n != 1 {
		t.Errorf("job B: %d job.accepted events, want 1", n)
	}
	if n := len(eb[model.EventRequestSubmitted]); n != 1 {
		t.Errorf("job B: %d request.submitted events, want 1", n)
	}
	if n := h.w.Stats().AlreadyPublished.Load(); n != 2 {
		t.Errorf("AlreadyPublished %d, want 2", n)
	}
	// The republished entries are marked now: a later delivery does not
	// even look.
	ce, ok, err := h.w.journalGet(ctx, a.JobID, 1)
	if err != nil || !ok || !ce.Published {
		t.Errorf("chunk 1 of job A after the redelivery: %+v, %v, %v", ce, ok, err)
	}
	ae, ok, err := h.w.acceptGet(ctx, a.JobID)
	if err != nil || !ok || !ae.Published {
		t.Errorf("acceptance of job A after the redelivery: %+v, %v, %v", ae, ok, err)
	}
}

// TestReusedJobIDIsRejected: a job id used again for other devices is
// rejected without submitting anything, whether the first job left an
// acceptance record or only its journal (written before the record
// existed).
func TestReusedJobIDIsRejected(t *testing.T) {
	for _, c := range []struct {
		name   string
		oldJob bool // only the journal, with digests, is left of the first job
	}{{"acceptance record", false}, {"journal only", true}} {
		t.Run(c.name, func(t *testing.T) {
			api := &fakeAPI{}
			h := start(t, Config{ChunkSize: 5}, api)
			ctx := context.Background()
			first := model.Job{JobID: "job-reused", AccountName: testAccount, Devices: devices(75, 10),
				ReplyTo: "replies.reused"}
			publish(t, h.bus, queue.JobSubject(testAccount), first)
			queuetest.Eventually(t, 10*time.Second, "first job", func() bool { return h.w.Stats().JobsDone.Load() == 1 })
			if c.oldJob {
				if err := h.bus.Chunks.Purge(ctx, acceptKey(first.JobID)); err != nil {
					t.Fatal(err)
				}
			}
			sub, err := h.bus.NC.SubscribeSync(first.ReplyTo)
			if err != nil {
				t.Fatal(err)
			}

			// Same first chunk, other second one: nothing may be sent.
			second := first
			second.Devices = append(append([]model.Device(nil), first.Devices[:5]...), devices(76, 5)...)
			publish(t, h.bus, queue.JobSubject(testAccount), second)
			queuetest.Eventually(t, 10*time.Second, "rejection", func() bool { return h.w.Stats().JobsRejected.Load() == 1 })
			queuetest.Eventually(t, 5*time.Second, "message terminated", func() bool { return jobsLeft(t, h.bus) == 0 })
			if n := len(api.requests()); n != 2 {
				t.Fatalf("%d requests, want the first job's 2 only", n)
			}
			var rej []model.Event
			queuetest.Eventually(t, 5*time.Second, "job.rejected", func() bool {
				rej = jobEvents(t, h.bus, first.JobID)[model.EventJobRejected]
				return len(rej) == 1
			})
			want := "job id job-reused was used before for other devices; use a new job id"
			if p := rej[0].Problems; len(p) != 1 || p[0].Field != "jobId" || p[0].Reason != want {
				t.Fatalf("problems %+v", p)
			}
			m, err := sub.NextMsg(5 * time.Second)
			if err != nil || !strings.Contains(string(m.Data), model.EventJobRejected) {
				t.Fatalf("reply subject: %v", err)
			}
			dead := queuetest.Msgs(t, h.bus, queue.StreamDead)
			if len(dead) != 1 || !strings.Contains(dead[0].Headers().Get(queue.HeaderReason), "used before") {
				t.Fatalf("%d dead letters", len(dead))
			}
			if c.oldJob {
				// The rejection did not write the second job's digest.
				if _, err := h.bus.Chunks.Get(ctx, acceptKey(first.JobID)); !errors.Is(err, jetstream.ErrKeyNotFound) {
					t.Fatalf("acceptance record after the rejection: %v", err)
				}
			}
			st, err := h.tr.Get(ctx, first.JobID)
			if err != nil || st.Counts.Devices != 10 {
				t.Fatalf("first job's state changed: %+v, %v", st, err)
			}
		})
	}
}
