package callback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sync/errgroup"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

type harness struct {
	t   *testing.T
	bus *queue.Bus
	tr  *progress.Tracker
}

func startCorrelator(t *testing.T, cfg Config, log *zap.Logger) *harness {
	t.Helper()
	return startCorrelatorWith(t, cfg, log, nil)
}

// startCorrelatorWith is startCorrelator with a chance to change the
// correlator before it runs.
func startCorrelatorWith(t *testing.T, cfg Config, log *zap.Logger, opt func(*Correlator)) *harness {
	t.Helper()
	bus := queuetest.Bus(t)
	tr, err := progress.New(bus, log)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCorrelator(cfg, bus, tr, log)
	if err != nil {
		t.Fatal(err)
	}
	if opt != nil {
		opt(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		// What our own cancel ends (a test over before Run had started)
		// is not a failure.
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	return &harness{t: t, bus: bus, tr: tr}
}

// job starts a job and records one request holding all its devices.
func (h *harness) job(id, requestID string, devs []model.Device) model.RequestRecord {
	h.t.Helper()
	ctx := context.Background()
	if err := h.tr.StartJob(ctx, model.Job{JobID: id, AccountName: testAccount, Devices: devs}); err != nil {
		h.t.Fatal(err)
	}
	rec := model.RequestRecord{RequestID: requestID, JobID: id, AccountName: testAccount,
		Devices: devs, SubmittedAt: time.Now().Unix()}
	h.putRecord(rec)
	return rec
}

func (h *harness) putRecord(rec model.RequestRecord) {
	h.t.Helper()
	data, _ := json.Marshal(rec)
	if _, err := h.bus.Requests.Put(context.Background(), rec.RequestID, data); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) callback(body []byte) {
	h.t.Helper()
	if _, err := h.bus.JS.Publish(context.Background(), queue.CallbackSubject, body); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) waitEvents(typ string, n int) []model.Event {
	h.t.Helper()
	var got []model.Event
	queuetest.Eventually(h.t, 15*time.Second, fmt.Sprintf("%d %s events", n, typ), func() bool {
		got = queuetest.OfType(queuetest.Events(h.t, h.bus), typ)
		return len(got) >= n
	})
	return got
}

func TestCorrelateSuccessAndFailure(t *testing.T) {
	h := startCorrelator(t, testConfig(), zaptest.NewLogger(t))
	devs := devices(10, 2)
	h.job("job-a", "req-a", devs)

	// The failure names the device by its ICCID only, in another shape.
	h.callback(callbackBody("req-a", devs[0], model.StatusSuccess))
	failed := fmt.Sprintf(`{"RequestId":"req-a","deviceResponse":{"deviceProfileResponse":
		{"deviceIdentifierCollection":{"kind":"ICCID","id":"%s"}}},"status":"Failed",
		"faultResponse":{"faultcode":"SVC0002","faultstring":"not eligible"},"callbackCount":"1"}`,
		devs[1].ID(model.KindICCID))
	h.callback([]byte(failed))

	done := h.waitEvents(model.EventJobCompleted, 1)
	es := queuetest.Events(t, h.bus)
	ok := queuetest.OfType(es, model.EventDeviceSucceeded)
	bad := queuetest.OfType(es, model.EventDeviceFailed)
	if len(ok) != 1 || len(bad) != 1 || len(done) != 1 {
		t.Fatalf("events %+v", es)
	}
	if ok[0].Device.Key() != devs[0].Key() || ok[0].RequestID != "req-a" || ok[0].JobID != "job-a" {
		t.Fatalf("success %+v", ok[0])
	}
	// The event names the device as the job did, all its identifiers.
	if bad[0].Device.Key() != devs[1].Key() || bad[0].Fault == nil || bad[0].Fault.Code != "SVC0002" {
		t.Fatalf("failure %+v", bad[0])
	}
	if c := done[0].Counts; c == nil || *c != (model.Counts{Devices: 2, Succeeded: 1, Failed: 1}) {
		t.Fatalf("completed %+v", done[0])
	}
}

func TestCorrelateDuplicates(t *testing.T) {
	h := startCorrelator(t, testConfig(), zaptest.NewLogger(t))
	devs := devices(11, 2)
	h.job("job-d", "req-d", devs)
	// ThingSpace resends the same device's callback, as a new message.
	for i := range 3 {
		var b model.CallbackBody
		_ = json.Unmarshal(callbackBody("req-d", devs[0], model.StatusSuccess), &b)
		b.CallbackCount = i + 1
		data, _ := json.Marshal(b)
		h.callback(data)
	}
	h.callback(callbackBody("req-d", devs[1], "WARNING"))
	h.waitEvents(model.EventDeviceStatus, 1)
	h.callback(callbackBody("req-d", devs[1], model.StatusSuccess))
	h.waitEvents(model.EventJobCompleted, 1)

	es := queuetest.Events(t, h.bus)
	if n := len(queuetest.OfType(es, model.EventDeviceSucceeded)); n != 2 {
		t.Fatalf("%d device.succeeded, want 2: %+v", n, es)
	}
	st, err := h.tr.Get(context.Background(), "job-d")
	if err != nil || st.Counts.Succeeded != 2 || !st.Completed {
		t.Fatalf("state %+v %v", st, err)
	}
}

func TestCorrelateWaitsForRecord(t *testing.T) {
	cfg := testConfig()
	cfg.UnmatchedWait = 20 * time.Second
	h := startCorrelator(t, cfg, zaptest.NewLogger(t))
	devs := devices(12, 1)
	if err := h.tr.StartJob(context.Background(), model.Job{JobID: "job-w", AccountName: testAccount, Devices: devs}); err != nil {
		t.Fatal(err)
	}
	before := counters.waiting.Load()
	h.callback(callbackBody("req-w", devs[0], model.StatusSuccess))
	queuetest.Eventually(t, 10*time.Second, "the callback to wait", func() bool { return counters.waiting.Load() > before })

	h.putRecord(model.RequestRecord{RequestID: "req-w", JobID: "job-w", AccountName: testAccount, Devices: devs})
	h.waitEvents(model.EventJobCompleted, 1)
	if n := len(queuetest.OfType(queuetest.Events(t, h.bus), model.EventDeviceUnmatched)); n != 0 {
		t.Fatalf("%d unmatched", n)
	}
}

// TestCorrelateEarlyCallback is the callback that beats its request record
// by a little, as the simulator's do: it is matched on its first delivery,
// without a redelivery and without an unmatched event.
func TestCorrelateEarlyCallback(t *testing.T) {
	cfg := testConfig()
	cfg.UnmatchedWait = 20 * time.Second
	// Long enough that the record below is always put inside the wait,
	// however slow the machine; RecordWait itself is much shorter.
	h := startCorrelatorWith(t, cfg, zaptest.NewLogger(t), func(c *Correlator) { c.recordWait = 10 * time.Second })
	devs := devices(15, 2)
	if err := h.tr.StartJob(context.Background(), model.Job{JobID: "job-e", AccountName: testAccount, Devices: devs}); err != nil {
		t.Fatal(err)
	}
	waiting, awaited, found := counters.waiting.Load(), counters.awaited.Load(), counters.awaitedFound.Load()
	h.callback(callbackBody("req-e", devs[0], model.StatusSuccess))
	h.callback(callbackBody("req-e", devs[1], model.StatusFailed))
	queuetest.Eventually(t, 10*time.Second, "the callbacks to wait for their record", func() bool {
		return counters.awaited.Load()-awaited >= 2
	})
	h.putRecord(model.RequestRecord{RequestID: "req-e", JobID: "job-e", AccountName: testAccount, Devices: devs})
	h.waitEvents(model.EventJobCompleted, 1)

	if n := counters.waiting.Load() - waiting; n != 0 {
		t.Fatalf("%d redeliveries, want the callbacks matched on their first delivery", n)
	}
	if n := counters.awaitedFound.Load() - found; n != 2 {
		t.Fatalf("%d callbacks found their record while waiting, want 2", n)
	}
	es := queuetest.Events(t, h.bus)
	if n := len(queuetest.OfType(es, model.EventDeviceUnmatched)); n != 0 {
		t.Fatalf("%d unmatched", n)
	}
	st, err := h.tr.Get(context.Background(), "job-e")
	if err != nil || st.Counts != (model.Counts{Devices: 2, Succeeded: 1, Failed: 1}) || !st.Completed {
		t.Fatalf("state %+v %v", st, err)
	}
}

func TestWaitDelay(t *testing.T) {
	for _, c := range []struct {
		n          uint64
		left, want time.Duration
	}{
		{0, 30 * time.Second, FirstWaitDelay},
		{1, 30 * time.Second, FirstWaitDelay},
		{2, 30 * time.Second, 2 * FirstWaitDelay},
		{4, 30 * time.Second, 8 * FirstWaitDelay},
		{9, 30 * time.Second, 256 * FirstWaitDelay},
		{10, 30 * time.Second, 30 * time.Second},
		{1000, 30 * time.Second, 30 * time.Second},
		{1, 40 * time.Millisecond, 40 * time.Millisecond},
		{5, 250 * time.Millisecond, 250 * time.Millisecond},
		{3, 0, 0},
	} {
		if got := waitDelay(c.n, c.left); got != c.want {
			t.Errorf("waitDelay(%d, %s) = %s, want %s", c.n, c.left, got, c.want)
		}
	}
}

func TestCorrelateUnmatched(t *testing.T) {
	h := startCorrelator(t, testConfig(), zaptest.NewLogger(t))
	dev := devices(13, 1)[0]
	start := time.Now()
	h.callback(callbackBody("no-such-request", dev, model.StatusSuccess))
	e := h.waitEvents(model.EventDeviceUnmatched, 1)[0]
	if time.Since(start) < testConfig().UnmatchedWait {
		t.Fatal("unmatched before the wait")
	}
	if e.JobID != model.UnknownJobID || e.RequestID != "no-such-request" || e.Device.Key() != dev.Key() {
		t.Fatalf("unmatched %+v", e)
	}
	if n := len(queuetest.OfType(queuetest.Events(t, h.bus), model.EventDeviceSucceeded)); n != 0 {
		t.Fatal("an unmatched callback produced a success")
	}
}

func TestCorrelateDeadLetter(t *testing.T) {
	h := startCorrelator(t, testConfig(), zaptest.NewLogger(t))
	h.callback([]byte(`{"requestId":"req-x","status":"SUCCESS","password":"` + testPass + `"}`))
	var dead []byte
	var reason string
	queuetest.Eventually(t, 10*time.Second, "a dead letter", func() bool {
		ms := queuetest.Msgs(t, h.bus, queue.StreamDead)
		if len(ms) == 0 {
			return false
		}
		dead, reason = ms[0].Data(), ms[0].Headers().Get(queue.HeaderReason)
		return true
	})
	if reason == "" || json.Valid(dead) == false {
		t.Fatalf("dead letter %q reason %q", dead, reason)
	}
	if string(dead) == "" || contains2(string(dead), testPass) {
		t.Fatalf("dead letter keeps the password: %s", dead)
	}
	if n := len(queuetest.Events(t, h.bus)); n != 0 {
		t.Fatalf("%d events from an undecodable callback", n)
	}
}

func contains2(s, sub string) bool { return len(sub) > 0 && len(s) >= len(sub) && indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestCorrelateThroughput pushes many callbacks through; TSFB_TEST_CALLBACKS
// raises the count (20000 for the design's target).
func TestCorrelateThroughput(t *testing.T) {
	n := 2000
	if s := os.Getenv("TSFB_TEST_CALLBACKS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	h := startCorrelator(t, testConfig(), zap.NewNop())
	const perRequest = 100
	devs := devices(14, n)
	jobs := 0
	for i := 0; i < n; i += 10 * perRequest { // jobs of 1000 devices
		jobs++
		end := min(i+10*perRequest, n)
		id := fmt.Sprintf("load-%d", i)
		if err := h.tr.StartJob(context.Background(), model.Job{JobID: id, AccountName: testAccount, Devices: devs[i:end]}); err != nil {
			t.Fatal(err)
		}
		for r := i; r < end; r += perRequest {
			h.putRecord(model.RequestRecord{RequestID: fmt.Sprintf("req-%d", r), JobID: id,
				AccountName: testAccount, Devices: devs[r:min(r+perRequest, end)]})
		}
	}
	start := time.Now()
	var g errgroup.Group
	g.SetLimit(8)
	for i := range devs {
		g.Go(func() error {
			body := callbackBody(fmt.Sprintf("req-%d", i/perRequest*perRequest), devs[i], model.StatusSuccess)
			_, err := h.bus.JS.PublishAsync(queue.CallbackSubject, body)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	want := n + jobs
	queuetest.Eventually(t, 50*time.Second, "every event", func() bool {
		return streamMsgs(t, h.bus, queue.StreamResults) >= want
	})
	t.Logf("%d callbacks correlated in %s", n, time.Since(start))
	if got := len(queuetest.OfType(queuetest.Events(t, h.bus), model.EventJobCompleted)); got != jobs {
		t.Fatalf("%d job.completed, want %d", got, jobs)
	}
}
