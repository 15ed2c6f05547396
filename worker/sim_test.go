package worker

import (
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/thingspace/sim"
)

// startSim runs the simulator on a loopback port and returns a client of
// it.
func startSim(t *testing.T, cfg sim.Config) (*sim.Sim, *thingspace.Client) {
	t.Helper()
	s, err := sim.New(cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, err := thingspace.New(thingspace.Config{
		BaseURL:      base,
		ClientID:     cfg.ClientID,
		ClientSecret: config.Secret(cfg.ClientSecret),
		Username:     cfg.Username,
		Password:     config.Secret(cfg.Password),
	}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return s, c
}

func TestThousandDevicesAgainstSimulator(t *testing.T) {
	s, client := startSim(t, sim.DefaultConfig())
	h := start(t, Config{}, client)
	job := model.Job{JobID: "job-sim-1000", AccountName: testAccount, Devices: devices(9, 1000)}
	publish(t, h.bus, queue.JobSubject(testAccount), job)

	queuetest.Eventually(t, 30*time.Second, "job acknowledged", func() bool {
		return h.w.Stats().JobsDone.Load() == 1
	})
	if st := s.Stats(); st.RequestsAccepted != 10 || st.DevicesSubmitted != 1000 || st.DevicesResubmitted != 0 {
		t.Fatalf("simulator stats: accepted %d, devices %d, resubmitted %d",
			st.RequestsAccepted, st.DevicesSubmitted, st.DevicesResubmitted)
	}
	var submitted []model.Event
	queuetest.Eventually(t, 5*time.Second, "request.submitted events", func() bool {
		submitted = queuetest.OfType(queuetest.Events(t, h.bus), model.EventRequestSubmitted)
		return len(submitted) == 10
	})
	seen := map[string]bool{}
	chunks := map[int]bool{}
	for _, e := range submitted {
		if len(e.RequestID) != 36 || seen[e.RequestID] || len(e.Devices) != 100 {
			t.Fatalf("request.submitted: id %q, %d devices", e.RequestID, len(e.Devices))
		}
		seen[e.RequestID] = true
		rec, ok := getRecord(t, h.bus, e.RequestID)
		if !ok || rec.JobID != job.JobID || len(rec.Devices) != 100 ||
			rec.Devices[0].Key() != e.Devices[0].Key() {
			t.Fatalf("record of %s: %+v", e.RequestID, rec)
		}
		chunks[rec.Chunk] = true
	}
	if len(chunks) != 10 {
		t.Fatalf("chunks recorded: %v", chunks)
	}
}

func TestSimulatorRateLimitIsHonoured(t *testing.T) {
	cfg := sim.DefaultConfig()
	cfg.RateRPS = 5
	cfg.RateBurst = 1
	s, client := startSim(t, cfg)
	// The worker's own budget is above the simulator's, so it meets 429s
	// and must pause on them rather than lose or fail devices.
	h := start(t, Config{ChunkSize: 10}, client)
	job := model.Job{JobID: "job-sim-429", AccountName: testAccount, Devices: devices(10, 60)}
	publish(t, h.bus, queue.JobSubject(testAccount), job)
	queuetest.Eventually(t, 30*time.Second, "job acknowledged", func() bool {
		return h.w.Stats().JobsDone.Load() == 1
	})
	st := s.Stats()
	if st.RequestsAccepted != 6 || st.DevicesResubmitted != 0 {
		t.Fatalf("simulator accepted %d requests, %d devices resubmitted", st.RequestsAccepted,
			st.DevicesResubmitted)
	}
	if st.RateLimited == 0 || h.w.Stats().RateLimited.Load() != st.RateLimited {
		t.Logf("429s: simulator %d, worker %d", st.RateLimited, h.w.Stats().RateLimited.Load())
	}
	if n := len(queuetest.OfType(queuetest.Events(t, h.bus), model.EventDeviceFailed)); n != 0 {
		t.Fatalf("%d devices failed under rate limiting", n)
	}
}
