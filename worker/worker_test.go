package worker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/thingspace"
)

func TestChunksRecordsAndEvents(t *testing.T) {
	api := &fakeAPI{}
	h := start(t, Config{ChunkSize: 100}, api)
	job := model.Job{JobID: "job-chunks", AccountName: testAccount, Devices: devices(1, 250)}
	publish(t, h.bus, queue.JobSubject(testAccount), job)

	queuetest.Eventually(t, 10*time.Second, "job acknowledged", func() bool {
		return h.w.Stats().JobsDone.Load() == 1
	})
	reqs := api.requests()
	if len(reqs) != 3 || len(reqs[0].Devices) != 100 || len(reqs[1].Devices) != 100 ||
		len(reqs[2].Devices) != 50 {
		t.Fatalf("requests: %d, want 3 of 100, 100, 50", len(reqs))
	}
	for i, r := range reqs {
		if r.AccountName != testAccount {
			t.Fatalf("request %d account %q", i, r.AccountName)
		}
		rec, ok := getRecord(t, h.bus, "req-000"+string(rune('0'+i)))
		if !ok || rec.JobID != job.JobID || rec.Chunk != i || len(rec.Devices) != len(r.Devices) {
			t.Fatalf("record of request %d: %+v (found %v)", i, rec, ok)
		}
		if rec.Devices[0].Key() != job.Devices[i*100].Key() {
			t.Fatalf("record %d starts with the wrong device", i)
		}
	}
	if n := jobsLeft(t, h.bus); n != 0 {
		t.Fatalf("%d job messages left in the stream", n)
	}
	var es []model.Event
	queuetest.Eventually(t, 5*time.Second, "events", func() bool {
		es = queuetest.Events(t, h.bus)
		return len(queuetest.OfType(es, model.EventRequestSubmitted)) == 3
	})
	if len(queuetest.OfType(es, model.EventJobAccepted)) != 1 {
		t.Fatalf("events: %+v", es)
	}
	for _, e := range queuetest.OfType(es, model.EventRequestSubmitted) {
		if e.JobID != job.JobID || e.RequestID == "" || len(e.Devices) == 0 || e.PossibleDuplicate {
			t.Fatalf("request.submitted: %+v", e)
		}
	}
	st, err := h.tr.Get(context.Background(), job.JobID)
	if err != nil || st.Counts.Devices != 250 {
		t.Fatalf("job state %+v, %v", st, err)
	}
}

func TestRedeliverySkipsJournaledChunks(t *testing.T) {
	job := model.Job{JobID: "job-redeliver", AccountName: testAccount, Devices: devices(2, 30)}
	second := job.Devices[10].Key()
	failed := false
	api := &fakeAPI{}
	api.fn = func(call int, req model.SetFallbackRequest) (string, error) {
		// The second chunk fails every try of the first delivery.
		if req.Devices[0].Key() == second && !failed {
			if call >= 2 {
				failed = true
			}
			return "", &thingspace.Error{Kind: thingspace.KindTransient, Status: 500}
		}
		return "req-" + req.Devices[0].Key()[:20], nil
	}
	h := start(t, Config{ChunkSize: 10}, api)
	publish(t, h.bus, queue.JobSubject(testAccount), job)

	queuetest.Eventually(t, 10*time.Second, "job acknowledged", func() bool {
		return h.w.Stats().JobsDone.Load() == 1
	})
	perChunk := map[string]int{}
	for _, r := range api.requests() {
		perChunk[r.Devices[0].Key()]++
	}
	if perChunk[job.Devices[0].Key()] != 1 {
		t.Fatalf("first chunk submitted %d times, want once", perChunk[job.Devices[0].Key()])
	}
	if perChunk[second] != 3 || perChunk[job.Devices[20].Key()] != 1 {
		t.Fatalf("submissions per chunk: %v", perChunk)
	}
	if h.w.Stats().ChunksSkip.Load() != 1 || h.w.Stats().JobsRetried.Load() != 1 {
		t.Fatalf("skipped %d, retried %d", h.w.Stats().ChunksSkip.Load(), h.w.Stats().JobsRetried.Load())
	}
	queuetest.Eventually(t, 5*time.Second, "events", func() bool {
		return len(queuetest.OfType(queuetest.Events(t, h.bus), model.EventRequestSubmitted)) == 3
	})
	// The republished event of the skipped chunk is a duplicate.
	if n := len(queuetest.OfType(queuetest.Events(t, h.bus), model.EventJobAccepted)); n != 1 {
		t.Fatalf("%d job.accepted events, want 1", n)
	}
}

func TestRateLimitPausesAndRetries(t *testing.T) {
	api := &fakeAPI{}
	api.fn = func(call int, req model.SetFallbackRequest) (string, error) {
		if call == 0 {
			return "", &thingspace.Error{Kind: thingspace.KindRateLimited, Status: 429,
				RetryAfter: 50 * time.Millisecond}
		}
		return "req-ok", nil
	}
	h := start(t, Config{}, api)
	before := time.Now()
	publish(t, h.bus, queue.JobSubject(testAccount),
		model.Job{JobID: "job-429", AccountName: testAccount, Devices: devices(3, 5)})
	queuetest.Eventually(t, 10*time.Second, "job acknowledged", func() bool {
		return h.w.Stats().JobsDone.Load() == 1
	})
	if n := len(api.requests()); n != 2 {
		t.Fatalf("%d requests, want 2", n)
	}
	if h.w.Stats().RateLimited.Load() != 1 {
		t.Fatalf("rate limited %d", h.w.Stats().RateLimited.Load())
	}
	if p := h.lim.PausedUntil(); p.Before(before.Add(50 * time.Millisecond)) {
		t.Fatalf("limiter paused until %v, want at least Retry-After after %v", p, before)
	}
	if _, ok := getRecord(t, h.bus, "req-ok"); !ok {
		t.Fatal("no record after the retry")
	}
}

func TestPermanentFailureFailsDevices(t *testing.T) {
	job := model.Job{JobID: "job-refused", AccountName: testAccount, Devices: devices(4, 15),
		ReplyTo: "replies.refused"}
	refused := job.Devices[10].Key()
	api := &fakeAPI{}
	api.fn = func(call int, req model.SetFallbackRequest) (string, error) {
		if req.Devices[0].Key() == refused {
			return "", &thingspace.Error{Kind: thingspace.KindPermanent, Status: 400,
				Code: "INPUT_INVALID.Devices", Message: "device not on account"}
		}
		return "req-good", nil
	}
	h := start(t, Config{ChunkSize: 10}, api)
	sub, err := h.bus.NC.SubscribeSync(job.ReplyTo)
	if err != nil {
		t.Fatal(err)
	}
	publish(t, h.bus, queue.JobSubject(testAccount), job)
	queuetest.Eventually(t, 10*time.Second, "job acknowledged", func() bool {
		return h.w.Stats().JobsDone.Load() == 1
	})
	if n := len(api.requests()); n != 2 {
		t.Fatalf("%d requests, want 2 (a permanent refusal is not retried)", n)
	}
	var failed []model.Event
	queuetest.Eventually(t, 5*time.Second, "device.failed events", func() bool {
		failed = queuetest.OfType(queuetest.Events(t, h.bus), model.EventDeviceFailed)
		return len(failed) == 5
	})
	for _, e := range failed {
		if e.Fault == nil || e.Fault.Code != "INPUT_INVALID.Devices" || e.Device == nil {
			t.Fatalf("device.failed: %+v", e)
		}
	}
	st, err := h.tr.Get(context.Background(), job.JobID)
	if err != nil || st.Counts.Failed != 5 || st.Counts.Devices != 15 {
		t.Fatalf("job state %+v, %v", st, err)
	}
	// The reply subject got the events too.
	if m, err := sub.NextMsg(5 * time.Second); err != nil || len(m.Data) == 0 {
		t.Fatalf("nothing on the reply subject: %v", err)
	}
}

func TestInvalidJobsAreRejected(t *testing.T) {
	api := &fakeAPI{}
	h := start(t, Config{}, api)
	bad := model.Job{JobID: "job-bad", AccountName: testAccount, Devices: devices(5, 3)}
	bad.Devices[1].DeviceIDs[0].ID = "123"
	publish(t, h.bus, queue.JobSubject(testAccount), bad)
	publish(t, h.bus, queue.JobSubject(testAccount), []byte(`{"accountName": 12`))
	other := "0000999999-00001"
	publish(t, h.bus, queue.JobSubject(other),
		model.Job{JobID: "job-wrong-subject", AccountName: testAccount, Devices: devices(6, 1)})

	queuetest.Eventually(t, 10*time.Second, "three rejections", func() bool {
		return h.w.Stats().JobsRejected.Load() == 3
	})
	if n := len(api.requests()); n != 0 {
		t.Fatalf("%d requests sent for invalid jobs", n)
	}
	queuetest.Eventually(t, 5*time.Second, "rejected jobs terminated", func() bool {
		return jobsLeft(t, h.bus) == 0
	})
	rejected := map[string]model.Event{}
	queuetest.Eventually(t, 5*time.Second, "job.rejected events", func() bool {
		for _, e := range queuetest.OfType(queuetest.Events(t, h.bus), model.EventJobRejected) {
			rejected[e.JobID] = e
		}
		return len(rejected) == 3
	})
	e := rejected["job-bad"]
	if len(e.Problems) != 1 || e.Problems[0].Device != 1 || !strings.Contains(e.Problems[0].Field, "eid") {
		t.Fatalf("problems of job-bad: %+v", e.Problems)
	}
	if e := rejected["job-wrong-subject"]; len(e.Problems) != 1 || e.Problems[0].Field != "accountName" {
		t.Fatalf("problems of job-wrong-subject: %+v", e.Problems)
	}
	for id, e := range rejected {
		if id != "job-bad" && id != "job-wrong-subject" && (!strings.HasPrefix(id, "seq-") ||
			e.Problems[0].Field != "body" || e.AccountName != testAccount) {
			t.Fatalf("undecodable job's event: %+v", e)
		}
	}
	dead := queuetest.Msgs(t, h.bus, queue.StreamDead)
	if len(dead) != 3 {
		t.Fatalf("%d dead letters, want 3", len(dead))
	}
	for _, m := range dead {
		if m.Subject() != queue.DeadSubject(queue.DeadJobs) || m.Headers().Get(queue.HeaderReason) == "" ||
			!strings.HasPrefix(m.Headers().Get(queue.HeaderSubject), queue.JobsPrefix) {
			t.Fatalf("dead letter %s %v", m.Subject(), m.Headers())
		}
	}
}

func TestJobIDFromSequenceIsStable(t *testing.T) {
	api := &fakeAPI{}
	api.fn = func(call int, req model.SetFallbackRequest) (string, error) {
		if call < 2 { // the first delivery fails its two tries
			return "", errors.New("connection reset")
		}
		return "req-x", nil
	}
	h := start(t, Config{}, api)
	publish(t, h.bus, queue.JobSubject(testAccount),
		model.Job{AccountName: testAccount, Devices: devices(7, 2)})
	queuetest.Eventually(t, 10*time.Second, "job acknowledged", func() bool {
		return h.w.Stats().JobsDone.Load() == 1
	})
	var accepted []model.Event
	queuetest.Eventually(t, 5*time.Second, "events", func() bool {
		accepted = queuetest.OfType(queuetest.Events(t, h.bus), model.EventJobAccepted)
		return len(queuetest.OfType(queuetest.Events(t, h.bus), model.EventRequestSubmitted)) == 1
	})
	// Two deliveries, one job id: job.accepted was deduplicated.
	if len(accepted) != 1 || !strings.HasPrefix(accepted[0].JobID, "seq-1-") {
		t.Fatalf("job.accepted events: %+v", accepted)
	}
	rec, ok := getRecord(t, h.bus, "req-x")
	if !ok || rec.JobID != accepted[0].JobID {
		t.Fatalf("record %+v", rec)
	}
}

func TestGivesUpAfterLastDelivery(t *testing.T) {
	job := model.Job{JobID: "job-doomed", AccountName: testAccount, Devices: devices(8, 12)}
	api := &fakeAPI{}
	api.fn = func(call int, req model.SetFallbackRequest) (string, error) {
		if req.Devices[0].Key() == job.Devices[0].Key() {
			return "req-first", nil
		}
		return "", &thingspace.Error{Kind: thingspace.KindTransient, Status: 502}
	}
	h := start(t, Config{ChunkSize: 5, MaxDeliver: 2}, api)
	publish(t, h.bus, queue.JobSubject(testAccount), job)
	queuetest.Eventually(t, 10*time.Second, "job given up", func() bool {
		return h.w.Stats().JobsFailed.Load() == 1
	})
	queuetest.Eventually(t, 5*time.Second, "job terminated", func() bool {
		return jobsLeft(t, h.bus) == 0
	})
	var es []model.Event
	queuetest.Eventually(t, 5*time.Second, "events", func() bool {
		es = queuetest.Events(t, h.bus)
		return len(queuetest.OfType(es, model.EventJobFailed)) == 1
	})
	// Chunk 0 was submitted: its devices wait for callbacks. Chunks 1
	// and 2 (7 devices) failed.
	if n := len(queuetest.OfType(es, model.EventDeviceFailed)); n != 7 {
		t.Fatalf("%d device.failed events, want 7", n)
	}
	if f := queuetest.OfType(es, model.EventJobFailed)[0].Fault; f == nil || f.Code != FaultGaveUp {
		t.Fatalf("job.failed fault %+v", f)
	}
	if n := len(queuetest.Msgs(t, h.bus, queue.StreamDead)); n != 1 {
		t.Fatalf("%d dead letters", n)
	}
	st, err := h.tr.Get(context.Background(), job.JobID)
	if err != nil || st.Counts.Failed != 7 {
		t.Fatalf("job state %+v, %v", st, err)
	}
}
