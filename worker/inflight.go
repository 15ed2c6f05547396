package worker

import (
	"math"
	"sync"
	"time"
)

// In-flight work is bounded by the quota (design.md, "Scaling notes"): a
// process holds only the jobs its share of the rate budget can start
// within a horizon of half the ack wait. A job beyond that would sit
// acknowledged-pending here, renewed by in-progress acks, while another
// process with a free share could have started it.

// horizon is how far ahead a process fetches work: half the ack wait, so
// that a fetched job starts well before its message could be redelivered
// even without in-progress acks.
func horizon(ackWait time.Duration) time.Duration { return ackWait / 2 }

// jobSlots returns how many jobs a process may hold at once: as many as
// shareRPS requests per second start within horizon, for jobs of
// chunksPerJob requests each; at least one, at most concurrency.
func jobSlots(concurrency int, shareRPS float64, horizon time.Duration, chunksPerJob float64) int {
	if !(chunksPerJob >= 1) {
		chunksPerJob = 1
	}
	if !(shareRPS > 0) {
		return 1
	}
	n := math.Ceil(shareRPS * horizon.Seconds() / chunksPerJob)
	if n >= float64(concurrency) {
		return concurrency
	}
	return max(int(n), 1)
}

// maxAckPending sizes the consumer's MaxAckPending, which bounds the jobs
// in flight across every process. It depends only on settings every
// process shares (so that their create-or-update calls agree) and is never
// below the sum of their jobSlots, for up to ackPendingProcesses
// processes: each holds at most one job beyond its share of the
// deployment's rps*horizon requests, and no more than concurrency.
func maxAckPending(concurrency int, rps float64, horizon time.Duration) int {
	byConcurrency := concurrency * ackPendingProcesses
	byQuota := float64(ackPendingProcesses) + math.Ceil(rps*horizon.Seconds())
	if !(byQuota < float64(byConcurrency)) {
		return byConcurrency
	}
	return int(byQuota)
}

// estimateWeight is the weight of the latest job in the moving average of
// chunks per job.
const estimateWeight = 0.2

// chunkEstimate is a moving average of the requests per job, for jobSlots.
// Before the first job it assumes the largest job allowed, so that a new
// process does not take more than its share can start.
type chunkEstimate struct {
	mu  sync.Mutex
	avg float64
}

func newChunkEstimate(cfg Config) *chunkEstimate {
	return &chunkEstimate{avg: float64((cfg.MaxJobDevices + cfg.ChunkSize - 1) / cfg.ChunkSize)}
}

func (e *chunkEstimate) observe(chunks int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.avg += estimateWeight * (float64(chunks) - e.avg)
}

func (e *chunkEstimate) get() float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.avg
}
