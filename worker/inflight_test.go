package worker

import (
	"math"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/ratelimit"
)

func TestJobSlots(t *testing.T) {
	for _, c := range []struct {
		name        string
		concurrency int
		share       float64
		horizon     time.Duration
		chunks      float64
		want        int
	}{
		{"defaults", 8, 10, 15 * time.Second, 10, 8},
		{"e2e, three busy", 8, 20.0 / 3, 3 * time.Second, 50, 1},
		{"e2e, alone", 8, 20, 3 * time.Second, 50, 2},
		{"small jobs", 8, 2, 3 * time.Second, 1, 6},
		{"rounds up", 8, 1, 3 * time.Second, 2, 2},
		{"no share", 8, 0, 15 * time.Second, 10, 1},
		{"unknown size", 8, 2, 3 * time.Second, 0, 6},
		{"unlimited", 8, math.Inf(1), time.Second, 10, 8},
		{"NaN share", 8, math.NaN(), time.Second, 10, 1},
		{"one slot", 1, 1000, time.Second, 1, 1},
	} {
		if got := jobSlots(c.concurrency, c.share, c.horizon, c.chunks); got != c.want {
			t.Errorf("%s: jobSlots(%d, %v, %s, %v) = %d, want %d", c.name, c.concurrency, c.share,
				c.horizon, c.chunks, got, c.want)
		}
	}
}

// TestMaxAckPendingCoversEverySlot: the consumer's limit is the same for
// every process (it depends on shared settings only) and is never below
// what all processes together may hold, up to ackPendingProcesses of them.
func TestMaxAckPendingCoversEverySlot(t *testing.T) {
	if got := maxAckPending(8, 10, 15*time.Second); got != 64+150 {
		t.Errorf("maxAckPending(defaults) = %d, want %d", got, 64+150)
	}
	if got := maxAckPending(8, 1e9, time.Second); got != 8*ackPendingProcesses {
		t.Errorf("maxAckPending(huge rate) = %d, want the concurrency bound %d", got, 8*ackPendingProcesses)
	}
	for _, conc := range []int{1, 8, 100} {
		for _, rps := range []float64{0.5, 10, 333} {
			for _, h := range []time.Duration{1500 * time.Millisecond, 15 * time.Second} {
				limit := maxAckPending(conc, rps, h)
				for procs := 1; procs <= ackPendingProcesses; procs++ {
					for _, chunks := range []float64{1, 3, 10, 50} {
						if sum := procs * jobSlots(conc, rps/float64(procs), h, chunks); sum > limit {
							t.Fatalf("%d processes (concurrency %d, %v rps, %s, %v chunks) hold %d jobs, "+
								"MaxAckPending %d", procs, conc, rps, h, chunks, sum, limit)
						}
					}
				}
			}
		}
	}
}

func TestChunkEstimate(t *testing.T) {
	e := newChunkEstimate(Config{MaxJobDevices: 1000, ChunkSize: 20})
	if got := e.get(); got != 50 {
		t.Fatalf("first estimate %v, want the largest job's 50 chunks", got)
	}
	for range 50 {
		e.observe(2)
	}
	if got := e.get(); got < 2 || got > 2.5 {
		t.Fatalf("estimate after 50 jobs of 2 chunks: %v", got)
	}
}

// TestFetchBoundedByShare: with a small share a worker holds only the jobs
// it can start soon, even with free slots, and leaves the rest in the
// stream, where a second worker takes them while the first is saturated.
func TestFetchBoundedByShare(t *testing.T) {
	bus := queuetest.Bus(t)
	for i := range 4 {
		publish(t, bus, queue.JobSubject(testAccount), model.Job{JobID: "share-" + string(rune('a'+i)),
			AccountName: testAccount, Devices: devices(uint64(40+i), 10)})
	}
	// One request a second, a horizon of 3 s and jobs of 10 chunks: one job
	// at a time, though 8 slots are free.
	cfg := Config{ChunkSize: 1, MaxJobDevices: 10, AckWait: 6 * time.Second,
		ShutdownTimeout: 100 * time.Millisecond}
	slow := options{rate: ratelimit.Config{RPS: 1, Burst: 1}}
	apiA := newHoldAPI()
	a := startWith(t, bus, cfg, apiA, slow)
	queuetest.Eventually(t, 10*time.Second, "first worker's request", func() bool { return apiA.inside.Load() == 1 })
	if info := consumerInfo(t, bus, DefaultConsumer); info.NumAckPending != 1 || info.NumPending != 3 {
		t.Fatalf("one worker saturated: %d jobs ack-pending, %d in the stream; want 1 and 3",
			info.NumAckPending, info.NumPending)
	}
	if n := a.w.InFlight(); n != 1 {
		t.Fatalf("first worker holds %d jobs, want 1", n)
	}

	apiB := newHoldAPI()
	b := startWith(t, bus, cfg, apiB, slow)
	queuetest.Eventually(t, 10*time.Second, "second worker's request", func() bool { return apiB.inside.Load() == 1 })
	if info := consumerInfo(t, bus, DefaultConsumer); info.NumAckPending != 2 || info.NumPending != 2 {
		t.Fatalf("two workers saturated: %d jobs ack-pending, %d in the stream; want 2 and 2",
			info.NumAckPending, info.NumPending)
	}
	if a.w.InFlight() != 1 || b.w.InFlight() != 1 || apiA.calls.Load() != 1 {
		t.Fatalf("in flight: first %d (%d calls), second %d; want one job each", a.w.InFlight(),
			apiA.calls.Load(), b.w.InFlight())
	}
	if st := a.w.Stats(); st.JobsDone.Load() != 0 {
		t.Fatalf("first worker finished %d jobs; it should still be saturated", st.JobsDone.Load())
	}
}
