//go:build unix

package e2e

import (
	"syscall"
	"testing"
	"time"
)

// The e2e workload: 5,000 devices in jobs of the default size. With chunks
// of 20 devices that is 250 requests, about 12.5 s at 20 requests/s.
const (
	e2eJobs    = 5
	e2eJobSize = 1000
	e2eRPS     = 20
	// runTimeout bounds one run from the first publish to the last
	// job.completed; a healthy run takes a third of it.
	runTimeout = 45 * time.Second
)

func requests(cfg clusterConfig) int {
	cfg = cfg.defaulted()
	per := (e2eJobSize + cfg.ChunkSize - 1) / cfg.ChunkSize
	return e2eJobs * per
}

// TestThreeWorkers: three worker processes share the budget: every device
// gets exactly one final event, no request earns a 429 and none is sent
// twice.
func TestThreeWorkers(t *testing.T) {
	cfg := clusterConfig{Workers: 3, RPS: e2eRPS}
	c := newCluster(t, cfg)
	tl := c.follow()
	jobs := makeJobs("three", e2eJobs, e2eJobSize)
	c.publish(jobs)
	c.waitCompleted(tl, len(jobs), runTimeout)
	c.checkExactlyOnce(jobs)
	_, _, st := c.report(t)
	if st.RateLimited != 0 {
		t.Errorf("simulator sent %d 429s, want 0", st.RateLimited)
	}
	if st.DevicesResubmitted != 0 {
		t.Errorf("simulator saw %d devices in more than one request, want 0", st.DevicesResubmitted)
	}
	if want := int64(requests(cfg)); st.RequestsAccepted != want {
		t.Errorf("simulator accepted %d requests, want %d", st.RequestsAccepted, want)
	}
}

// TestKillWorker: kill -9 of a busy worker in the middle loses nothing.
// Its jobs come back after the ack wait and their journals keep the
// chunks it had recorded from being sent again. What it cannot keep out is
// the residual duplicate of design.md: a chunk accepted by ThingSpace
// whose journal entry the killed process had not yet written. Each job
// submits its chunks one at a time, so at most Concurrency chunks are in
// that window.
func TestKillWorker(t *testing.T) {
	cfg := clusterConfig{Workers: 3, RPS: e2eRPS}.defaulted()
	c := newCluster(t, cfg)
	tl := c.follow()
	jobs := makeJobs("kill", e2eJobs, e2eJobSize)
	c.publish(jobs)
	c.waitSubmitted(tl, requests(cfg)/4, runTimeout)
	victim := c.busiestWorker()
	t.Logf("killing %s after %d chunks of its own", victim.name, victim.logCount("worker_chunk_submitted"))
	if err := victim.signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if !victim.wait(stopTimeout) {
		t.Fatalf("%s still running after SIGKILL", victim.name)
	}
	c.waitCompleted(tl, len(jobs), runTimeout)
	c.checkExactlyOnce(jobs)
	_, _, st := c.report(t)
	bound := int64(cfg.Concurrency * cfg.ChunkSize)
	t.Logf("devicesResubmitted after kill -9: %d (bound %d)", st.DevicesResubmitted, bound)
	if st.DevicesResubmitted > bound {
		t.Errorf("simulator saw %d devices in more than one request, want at most %d "+
			"(%d chunks in flight of %d devices)", st.DevicesResubmitted, bound, cfg.Concurrency, cfg.ChunkSize)
	}
	if st.RateLimited != 0 {
		t.Errorf("simulator sent %d 429s, want 0", st.RateLimited)
	}
}

// TestRestartNATS: nats-server stopped with SIGTERM and started again on
// its store in the middle of a run loses nothing, and every tsfallback
// process goes on without a restart of its own.
func TestRestartNATS(t *testing.T) {
	cfg := clusterConfig{Workers: 3, RPS: e2eRPS}
	c := newCluster(t, cfg)
	tl := c.follow()
	jobs := makeJobs("natsrestart", e2eJobs, e2eJobSize)
	c.publish(jobs)
	c.waitSubmitted(tl, requests(cfg)/3, runTimeout)
	c.restartNATS()
	t.Log("nats-server restarted")
	c.waitCompleted(tl, len(jobs), runTimeout)
	c.checkExactlyOnce(jobs)
	_, _, st := c.report(t)
	for _, p := range append(c.workers, c.front) {
		if code := p.exitCode(); code != -2 {
			t.Errorf("%s exited (code %d) during the NATS restart", p.name, code)
		}
	}
	t.Logf("devicesResubmitted after the NATS restart: %d, rateLimited %d", st.DevicesResubmitted, st.RateLimited)
	// Limitation: seconds after a restart a worker can briefly count
	// fewer members than there are (their heartbeats reach it late), take
	// a larger share and earn a 429, which pauses every worker. It costs a
	// request, never a device; the claim here is that nothing is lost, so
	// a few are allowed (TestThreeWorkers holds zero).
	if st.RateLimited > maxFailover429 {
		t.Errorf("simulator sent %d 429s, want at most %d", st.RateLimited, maxFailover429)
	}
}

// TestTerminateWorker: SIGTERM makes a busy worker stop fetching, finish
// or hand back its jobs within its shutdown timeout and exit 0; the others
// complete every job.
func TestTerminateWorker(t *testing.T) {
	cfg := clusterConfig{Workers: 3, RPS: e2eRPS, Shutdown: 5 * time.Second}.defaulted()
	c := newCluster(t, cfg)
	tl := c.follow()
	jobs := makeJobs("sigterm", e2eJobs, e2eJobSize)
	c.publish(jobs)
	c.waitSubmitted(tl, requests(cfg)/4, runTimeout)
	victim := c.busiestWorker()
	start := time.Now()
	if err := victim.signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The shutdown timeout, then the limiter's leave and the NATS close.
	limit := cfg.Shutdown + 5*time.Second
	if !victim.wait(limit) {
		t.Fatalf("%s still running %s after SIGTERM (shutdown timeout %s)", victim.name, limit, cfg.Shutdown)
	}
	t.Logf("%s exited %d after %s", victim.name, victim.exitCode(), time.Since(start).Round(time.Millisecond))
	if code := victim.exitCode(); code != 0 {
		t.Errorf("%s exit code %d after SIGTERM, want 0", victim.name, code)
	}
	if victim.logCount("worker_stopped") == 0 {
		t.Errorf("%s did not log worker_stopped", victim.name)
	}
	c.waitCompleted(tl, len(jobs), runTimeout)
	c.checkExactlyOnce(jobs)
	_, _, st := c.report(t)
	if st.DevicesResubmitted != 0 {
		t.Errorf("simulator saw %d devices in more than one request after a graceful stop, want 0",
			st.DevicesResubmitted)
	}
	if st.RateLimited != 0 {
		t.Errorf("simulator sent %d 429s, want 0", st.RateLimited)
	}
}
