package worker

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/thingspace"
)

// TestLogFieldsOnce: no worker log entry carries a field twice, which
// JSON log readers resolve differently (job_id from the delivery's logger
// and again from the message was one).
func TestLogFieldsOnce(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	api := &fakeAPI{fn: func(call int, req model.SetFallbackRequest) (string, error) {
		if call < 2 { // the first delivery fails both tries
			return "", &thingspace.Error{Kind: thingspace.KindTransient, Status: 500}
		}
		return "req-logged", nil
	}}
	h := startWith(t, queuetest.Bus(t), Config{}, api, options{log: log})
	publish(t, h.bus, queue.JobSubject(testAccount),
		model.Job{JobID: "job-logged", AccountName: testAccount, Devices: devices(81, 2)})
	bad := model.Job{JobID: "job-logged-bad", AccountName: testAccount, Devices: devices(82, 1)}
	bad.Devices[0].DeviceIDs[0].ID = "1"
	publish(t, h.bus, queue.JobSubject(testAccount), bad)
	queuetest.Eventually(t, 10*time.Second, "jobs settled", func() bool {
		return h.w.Stats().JobsDone.Load() == 1 && h.w.Stats().JobsRejected.Load() == 1
	})
	for _, msg := range []string{"worker_job_retry_later", "worker_job_done", "worker_job_rejected",
		"worker_submit_retry", "worker_chunk_submitted"} {
		if logs.FilterMessage(msg).Len() == 0 {
			t.Errorf("no %s entry to check", msg)
		}
	}
	for _, e := range logs.All() {
		seen := map[string]bool{}
		for _, f := range e.Context {
			if seen[f.Key] {
				t.Errorf("%s carries %q twice: %v", e.Message, f.Key, e.ContextMap())
			}
			seen[f.Key] = true
		}
		if e.Message == "worker_job_retry_later" && e.ContextMap()["job_id"] != "job-logged" {
			t.Errorf("worker_job_retry_later without its job_id: %v", e.ContextMap())
		}
	}
}
