package callback

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/tsfallback/tsfallback/progress"
)

// counters are the process's callback metrics. They are process-wide, like
// expvar, because the ingester, the correlator and the sweeper of one
// process report on one /metrics page.
var counters = struct {
	mu        sync.Mutex
	responses map[int]*atomic.Int64 // HTTP answers by status code

	stored        atomic.Int64 // callbacks stored in JetStream
	authFailed    atomic.Int64
	storeFailed   atomic.Int64
	decoded       atomic.Int64
	deadLettered  atomic.Int64
	waiting       atomic.Int64 // redeliveries while waiting for a request record
	awaited       atomic.Int64 // first deliveries that waited in the batch for their record
	awaitedFound  atomic.Int64 // of those, the ones whose record came while waiting
	unmatched     atomic.Int64
	statusEvents  atomic.Int64
	staleStatus   atomic.Int64
	finals        atomic.Int64
	recordFailed  atomic.Int64
	batches       atomic.Int64
	timedOut      atomic.Int64
	sweeps        atomic.Int64
	examined      atomic.Int64 // request records looked at by the sweeper
	statusChecked atomic.Int64

	trackers []*progress.Tracker
}{responses: map[int]*atomic.Int64{}}

func countResponse(code int) {
	counters.mu.Lock()
	c := counters.responses[code]
	if c == nil {
		c = new(atomic.Int64)
		counters.responses[code] = c
	}
	counters.mu.Unlock()
	c.Add(1)
}

func registerTracker(t *progress.Tracker) {
	counters.mu.Lock()
	defer counters.mu.Unlock()
	for _, have := range counters.trackers {
		if have == t {
			return
		}
	}
	counters.trackers = append(counters.trackers, t)
}

// serveMetrics writes the counters in the Prometheus text format.
func serveMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	writeMetrics(w)
}

func writeMetrics(w io.Writer) {
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}

	counters.mu.Lock()
	codes := make([]int, 0, len(counters.responses))
	for c := range counters.responses {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	fmt.Fprintf(w, "# HELP tsfb_callback_http_responses_total Callback requests answered, by status code.\n")
	fmt.Fprintf(w, "# TYPE tsfb_callback_http_responses_total counter\n")
	for _, c := range codes {
		fmt.Fprintf(w, "tsfb_callback_http_responses_total{code=\"%d\"} %d\n", c, counters.responses[c].Load())
	}
	var st [6]int64
	for _, t := range counters.trackers {
		s := t.Stats()
		st[0] += s.Recorded.Load()
		st[1] += s.Redone.Load()
		st[2] += s.Resends.Load()
		st[3] += s.Invalid.Load()
		st[4] += s.Completed.Load()
		st[5] += s.Conflicts.Load()
	}
	counters.mu.Unlock()

	c := &counters
	counter("tsfb_callback_stored_total", "Callbacks stored in JetStream before the 200.", c.stored.Load())
	counter("tsfb_callback_auth_failed_total", "Callbacks refused for wrong or missing credentials.", c.authFailed.Load())
	counter("tsfb_callback_store_failed_total", "Callbacks answered 503 because JetStream did not store them.", c.storeFailed.Load())
	counter("tsfb_correlator_decoded_total", "Stored callbacks decoded.", c.decoded.Load())
	counter("tsfb_correlator_dead_lettered_total", "Callbacks that could not be decoded, kept in FALLBACK_DEAD.", c.deadLettered.Load())
	counter("tsfb_correlator_waiting_total", "Redeliveries of callbacks waiting for their request record.", c.waiting.Load())
	counter("tsfb_correlator_awaited_total", "First deliveries that waited in their batch for a late request record.", c.awaited.Load())
	counter("tsfb_correlator_awaited_found_total", "Callbacks whose late request record came while they waited in their batch.", c.awaitedFound.Load())
	counter("tsfb_correlator_unmatched_total", "device.unmatched events published.", c.unmatched.Load())
	counter("tsfb_correlator_status_events_total", "Non-final device.status events published.", c.statusEvents.Load())
	counter("tsfb_correlator_stale_status_total", "Non-final statuses dropped because the device had its final outcome.",
		c.staleStatus.Load())
	counter("tsfb_correlator_final_total", "Final callbacks handed to the progress tracker.", c.finals.Load())
	counter("tsfb_correlator_record_failed_total", "Batches whose outcomes could not be recorded (redelivered).", c.recordFailed.Load())
	counter("tsfb_correlator_batches_total", "Batches of callbacks processed.", c.batches.Load())
	counter("tsfb_sweeper_timed_out_total", "Devices timed out by the sweeper.", c.timedOut.Load())
	counter("tsfb_sweeper_sweeps_total", "Sweeps run.", c.sweeps.Load())
	counter("tsfb_sweeper_requests_examined_total", "Request records the sweeper looked at.", c.examined.Load())
	counter("tsfb_sweeper_status_checks_total", "Request status checks made before timing out.", c.statusChecked.Load())
	counter("tsfb_progress_recorded_total", "Final outcomes recorded for the first time.", st[0])
	counter("tsfb_progress_redone_total", "Outcomes found recorded by an unfinished attempt, published again.", st[1])
	counter("tsfb_progress_resends_total", "Outcomes already recorded from another callback, skipped.", st[2])
	counter("tsfb_progress_invalid_total", "Outcomes refused as invalid.", st[3])
	counter("tsfb_progress_jobs_completed_total", "job.completed events published.", st[4])
	counter("tsfb_progress_conflicts_total", "Job updates retried after a concurrent update.", st[5])
}
