package sim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/thingspace/sim"
	"github.com/tsfallback/tsfallback/thingspace/sim/simtest"
)

const account = "0000123456-00001"

type env struct {
	sim    *sim.Sim
	base   string
	client *thingspace.Client
	lsn    *simtest.Listener
}

func setup(t *testing.T, cfg sim.Config) *env {
	t.Helper()
	s, err := sim.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{sim: s, base: base}
	e.lsn = simtest.NewListener(t)
	t.Cleanup(func() { _ = s.Close() })
	c, err := thingspace.New(thingspace.Config{
		BaseURL: base, ClientID: sim.DefaultClientID, ClientSecret: sim.DefaultClientSecret,
		Username: sim.DefaultUsername, Password: sim.DefaultPassword,
		RequestTimeout: 5 * time.Second, LoginBackoff: time.Millisecond,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.client = c
	err = c.RegisterCallback(context.Background(), account, thingspace.Registration{
		Name: "DeviceProfileService", URL: e.lsn.URL, Username: "u1", Password: "p1",
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) raw() [][]byte { return e.lsn.Raw() }

func (e *env) idle(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.sim.Idle(ctx); err != nil {
		t.Fatal(err)
	}
}

func devs(seed uint64, n int) []model.Device {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]model.Device, n)
	for i := range out {
		out[i] = model.RandomDevice(r)
	}
	return out
}

func (e *env) submit(t *testing.T, ds []model.Device) string {
	t.Helper()
	rid, err := e.client.SetFallbackAttribute(context.Background(),
		model.SetFallbackRequest{AccountName: account, Devices: ds})
	if err != nil {
		t.Fatal(err)
	}
	return rid
}

func decode(t *testing.T, b []byte) model.CallbackBody {
	t.Helper()
	var cb model.CallbackBody
	if err := json.Unmarshal(b, &cb); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return cb
}

// 20,000 devices in 200 requests, with their callbacks, in a few seconds.
func TestScale(t *testing.T) {
	e := setup(t, sim.Config{FailRatio: 0.1})
	ds := devs(1, 20000)
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan int)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if _, err := e.client.SetFallbackAttribute(context.Background(), model.SetFallbackRequest{
					AccountName: account, Devices: ds[i*100 : (i+1)*100]}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	e.idle(t)
	took := time.Since(start)
	st := e.sim.Stats()
	if st.DevicesSubmitted != 20000 || st.CallbacksAcknowledged != 20000 || len(e.raw()) != 20000 {
		t.Fatalf("stats = %+v", st)
	}
	t.Logf("20000 devices with callbacks in %s, max %d req/s", took, st.MaxRequestsPerSecond)
}

func TestCallbackRetriedUntilAcknowledged(t *testing.T) {
	e := setup(t, sim.Config{CallbackRetryInterval: 10 * time.Millisecond})
	e.lsn.SetStatus(func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	e.submit(t, devs(2, 1))
	e.idle(t)
	raw := e.raw()
	if len(raw) != 3 {
		t.Fatalf("%d sends, want 3", len(raw))
	}
	for i, b := range raw {
		cb := decode(t, b)
		if cb.CallbackCount != i+1 || cb.MaxCallbackThreshold != 4 {
			t.Fatalf("send %d: count %d max %d", i, cb.CallbackCount, cb.MaxCallbackThreshold)
		}
	}
	if st := e.sim.Stats(); st.CallbacksSent != 3 || st.CallbacksAcknowledged != 1 || st.CallbacksRetried != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestCallbackAbandonedAfterFourSends(t *testing.T) {
	e := setup(t, sim.Config{CallbackRetryInterval: 5 * time.Millisecond})
	e.lsn.SetStatus(func(int) int { return http.StatusInternalServerError })
	e.submit(t, devs(3, 2))
	e.idle(t)
	if st := e.sim.Stats(); st.CallbacksSent != 8 || st.CallbacksAbandoned != 2 || st.CallbacksPending != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestCloseWithScheduledRetriesLeaksNothing(t *testing.T) {
	e := setup(t, sim.Config{CallbackRetryInterval: time.Hour})
	e.lsn.SetStatus(func(int) int { return http.StatusInternalServerError })
	e.submit(t, devs(4, 50))
	deadline := time.Now().Add(10 * time.Second)
	for e.sim.Stats().CallbacksSent < 50 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond) // polling with a deadline
	}
	if e.sim.Pending() != 50 {
		t.Fatalf("pending = %d", e.sim.Pending())
	}
	if err := e.sim.Close(); err != nil {
		t.Fatal(err)
	}
	if e.sim.Pending() != 0 {
		t.Fatalf("pending after close = %d", e.sim.Pending())
	}
}

func TestDuplicateAndNonFinalCallbacks(t *testing.T) {
	e := setup(t, sim.Config{DuplicateRatio: 1, NonFinalRatio: 1, NonFinalStatus: "PENDING"})
	ds := devs(5, 10)
	e.submit(t, ds)
	e.idle(t)
	perDevice := map[string][]string{}
	for _, b := range e.raw() {
		cb := decode(t, b)
		k := model.Device{DeviceIDs: cb.DeviceIDs}.Key()
		perDevice[k] = append(perDevice[k], cb.Status)
	}
	for _, d := range ds {
		got := perDevice[d.Key()]
		// PENDING first, then the final SUCCESS; its duplicate may come
		// before or after either.
		if len(got) != 3 || got[len(got)-1] != "SUCCESS" && got[1] != "SUCCESS" {
			t.Fatalf("device %s got %v", d.Key(), got)
		}
		pend := -1
		for i, s := range got {
			if s == "PENDING" {
				pend = i
			}
		}
		if pend < 0 || pend == len(got)-1 {
			t.Fatalf("device %s got %v", d.Key(), got)
		}
	}
}

func TestEarlyCallbacks(t *testing.T) {
	e := setup(t, sim.Config{EarlyCallbacks: true, OutOfOrder: true})
	e.submit(t, devs(6, 20))
	if n := len(e.raw()); n != 20 {
		t.Fatalf("%d callbacks before the answer, want 20", n)
	}
}

func TestCallbackShapes(t *testing.T) {
	tests := []struct {
		shape string
		check func(m map[string]any) bool
	}{
		{sim.ShapeStandard, func(m map[string]any) bool { return m["requestId"] != nil && m["deviceIds"] != nil }},
		{sim.ShapePascal, func(m map[string]any) bool { return m["RequestId"] != nil && m["requestId"] == nil }},
		{sim.ShapeUpperKind, func(m map[string]any) bool {
			ids := m["deviceIds"].([]any)
			return ids[0].(map[string]any)["kind"] == "EID"
		}},
		{sim.ShapeCollection, func(m map[string]any) bool {
			return m["deviceIds"] == nil && m["deviceResponse"] != nil
		}},
		{sim.ShapeStringCount, func(m map[string]any) bool {
			_, ok := m["callbackCount"].(string)
			return ok
		}},
	}
	for _, tt := range tests {
		t.Run(tt.shape, func(t *testing.T) {
			e := setup(t, sim.Config{CallbackShape: tt.shape})
			e.submit(t, devs(7, 1))
			e.idle(t)
			raw := e.raw()
			var m map[string]any
			if len(raw) != 1 || json.Unmarshal(raw[0], &m) != nil || !tt.check(m) {
				t.Fatalf("body %s", raw)
			}
		})
	}
	t.Run("mixed", func(t *testing.T) {
		e := setup(t, sim.Config{CallbackShape: sim.ShapeMixed})
		e.submit(t, devs(8, 50))
		e.idle(t)
		pascal := 0
		for _, b := range e.raw() {
			if bytes.Contains(b, []byte(`"RequestId"`)) {
				pascal++
			}
		}
		if pascal == 0 || pascal == 50 {
			t.Fatalf("%d of 50 pascal", pascal)
		}
	})
}

func TestUnregisteredAccountGetsNoCallbacks(t *testing.T) {
	e := setup(t, sim.Config{})
	_, err := e.client.SetFallbackAttribute(context.Background(), model.SetFallbackRequest{
		AccountName: "0000999999-00001", Devices: devs(9, 3)})
	if err != nil {
		t.Fatal(err)
	}
	if st := e.sim.Stats(); st.CallbacksUnregistered != 3 || st.CallbacksSent != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestResubmittedAndStatsEndpoint(t *testing.T) {
	e := setup(t, sim.Config{})
	ds := devs(10, 5)
	e.submit(t, ds)
	e.submit(t, ds)
	e.submit(t, ds[:2])
	e.idle(t)
	resp, err := http.Get(strings.TrimSuffix(e.base, "/api") + "/_sim/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"requests", "logins", "devicesSubmitted", "devicesResubmitted",
		"rateLimited", "maxRequestsPerSecond", "callbacksSent", "callbacksAcknowledged"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("stats lack %q: %v", k, m)
		}
	}
	if m["devicesResubmitted"].(float64) != 5 || m["devicesSubmitted"].(float64) != 12 ||
		m["maxRequestsPerSecond"].(float64) < 1 {
		t.Fatalf("stats = %v", m)
	}
	req := m["requests"].(map[string]any)["setfallbackattribute"].(map[string]any)
	if req["200"].(float64) != 3 {
		t.Fatalf("requests = %v", m["requests"])
	}
}

func TestFlags(t *testing.T) {
	cfg := sim.DefaultConfig()
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	cfg.RegisterFlags(fs)
	err := fs.Parse([]string{"--rate-rps=5", "--rate-burst=10", "--fail-ratio=0.2",
		"--client-id=a", "--callback-shape=mixed", "--callback-retry-interval=1s"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RateRPS != 5 || cfg.RateBurst != 10 || cfg.FailRatio != 0.2 || cfg.ClientID != "a" ||
		cfg.CallbackShape != "mixed" || cfg.CallbackRetryInterval != time.Second ||
		cfg.Password != sim.DefaultPassword {
		t.Fatalf("cfg = %+v", cfg)
	}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage == "" {
			t.Errorf("flag %s has no usage", f.Name)
		}
	})
	cfg.FailRatio = 2
	cfg.CallbackShape = "weird"
	err = cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "--fail-ratio") || !strings.Contains(err.Error(), "--callback-shape") {
		t.Fatalf("Validate = %v", err)
	}
}
