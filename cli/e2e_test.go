package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/sethvargo/go-envconfig"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/results"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/thingspace/sim"
)

const testAccount = "0000123456-00001"

// syncBuffer collects a command's output from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// e2eStack is a running deployment: an embedded NATS server, the
// simulator, and `tsfallback serve` with every role, in this process.
type e2eStack struct {
	env      map[string]string
	bus      *queue.Bus
	sim      *sim.Sim
	ingester string
	stderr   *syncBuffer
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startE2E(t *testing.T, tune func(*sim.Config)) *e2eStack {
	t.Helper()
	url := queuetest.Server(t)
	scfg := sim.DefaultConfig()
	scfg.CallbackRetryInterval = 200 * time.Millisecond
	if tune != nil {
		tune(&scfg)
	}
	s, err := sim.New(scfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	st := &e2eStack{sim: s, ingester: freeAddr(t), stderr: &syncBuffer{}}
	st.env = map[string]string{
		"TSFB_NATS_URL":                 url,
		"TSFB_THINGSPACE_URL":           base,
		"TSFB_THINGSPACE_CLIENT_ID":     scfg.ClientID,
		"TSFB_THINGSPACE_CLIENT_SECRET": scfg.ClientSecret,
		"TSFB_THINGSPACE_USERNAME":      scfg.Username,
		"TSFB_THINGSPACE_PASSWORD":      scfg.Password,
		"TSFB_CALLBACK_ADDR":            st.ingester,
		"TSFB_CALLBACK_USERNAME":        "cb-user",
		"TSFB_CALLBACK_PASSWORD":        "cb-secret-e2e",
		"TSFB_CALLBACK_UNMATCHED_WAIT":  "1s",
		"TSFB_RATE_RPS":                 "200",
		"TSFB_RATE_BURST":               "20",
		"TSFB_LOG_LEVEL":                "info",
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve"}, st.envFor(nil, st.stderr))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != ExitOK {
				t.Errorf("serve exited %d; stderr:\n%s", code, st.stderr)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30s")
		}
	})
	waitFor(t, 20*time.Second, "the ingester to listen", func() bool {
		resp, err := http.Get("http://" + st.ingester + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	client, err := thingspace.New(thingspace.Config{BaseURL: base, ClientID: scfg.ClientID,
		ClientSecret: config.Secret(scfg.ClientSecret), Username: scfg.Username, Password: config.Secret(scfg.Password)}.Defaulted(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	err = client.RegisterCallback(context.Background(), testAccount, thingspace.Registration{
		Name: thingspace.ServiceDeviceProfile, URL: "http://" + st.ingester + "/callbacks/thingspace",
		Username: "cb-user", Password: "cb-secret-e2e"})
	if err != nil {
		t.Fatal(err)
	}
	st.bus = queuetest.Open(t, url)
	return st
}

func (st *e2eStack) envFor(stdout, stderr *syncBuffer) Env {
	e := Env{Lookup: envconfig.MapLookuper(st.env), Stdin: strings.NewReader("")}
	e.Stdout, e.Stderr = &syncBuffer{}, &syncBuffer{}
	if stdout != nil {
		e.Stdout = stdout
	}
	if stderr != nil {
		e.Stderr = stderr
	}
	return e
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// collect reads the account's events until done says they are all in.
func collect(t *testing.T, st *e2eStack, d time.Duration, done func([]model.Event) bool) []model.Event {
	t.Helper()
	var (
		mu     sync.Mutex
		events []model.Event
	)
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := results.Read(ctx, st.bus.JS, results.Options{Follow: true, IdleWait: 100 * time.Millisecond},
		func(e model.Event, _ []byte) error {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, e)
			if done(events) {
				cancel()
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !done(events) {
		t.Fatalf("events still missing after %s (%d read); serve stderr:\n%s", d, len(events), st.stderr)
	}
	return events
}

func count(events []model.Event, typ string) int {
	n := 0
	for _, e := range events {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// TestEndToEndCSV imports a CSV with good and bad rows and checks that every
// good device gets exactly one final event and every job one job.completed.
func TestEndToEndCSV(t *testing.T) {
	st := startE2E(t, func(c *sim.Config) { c.FailRatio = 0.2; c.DuplicateRatio = 0.1 })
	r := rand.New(rand.NewPCG(7, 8))
	var csv strings.Builder
	csv.WriteString("eid,iccid,imei\n")
	const good = 250
	for range good {
		d := model.RandomDevice(r)
		fmt.Fprintf(&csv, "%s,%s,%s\n", d.ID(model.KindEID), d.ID(model.KindICCID), d.ID(model.KindIMEI))
	}
	csv.WriteString(",8.9148E+19,\n")      // spreadsheet damage
	csv.WriteString(",,490154203237519\n") // Luhn check fails
	csv.WriteString("1234,,\n")            // wrong length
	dir := t.TempDir()
	path := filepath.Join(dir, "devices.csv")
	if err := os.WriteFile(path, []byte(csv.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	report := filepath.Join(dir, "rejected.jsonl")
	out := &syncBuffer{}
	code := Main(context.Background(), []string{"import", "--account", testAccount, "--job-size", "100",
		"--run-id", "e2e", "--report", report, "--quiet", path}, st.envFor(out, nil))
	if code != ExitPartial {
		t.Fatalf("import exit %d, want %d (rows rejected); output:\n%s", code, ExitPartial, out)
	}
	rep, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"line":252`, `"line":253`, `"line":254`, "scientific notation"} {
		if !strings.Contains(string(rep), want) {
			t.Errorf("report lacks %s:\n%s", want, rep)
		}
	}

	const jobs = 3
	events := collect(t, st, 60*time.Second, func(es []model.Event) bool {
		return count(es, model.EventJobCompleted) >= jobs
	})
	finals := map[string]int{}
	for _, e := range events {
		if model.IsFinalDevice(e.Type) {
			finals[e.JobID+"/"+e.Device.Key()]++
		}
	}
	if len(finals) != good {
		t.Fatalf("%d devices have a final event, want %d", len(finals), good)
	}
	for k, n := range finals {
		if n != 1 {
			t.Errorf("device %s has %d final events, want 1", k, n)
		}
	}
	completed := map[string]int{}
	total := 0
	for _, e := range events {
		if e.Type == model.EventJobCompleted {
			completed[e.JobID]++
			total += e.Counts.Succeeded + e.Counts.Failed + e.Counts.TimedOut
		}
	}
	if len(completed) != jobs || total != good {
		t.Fatalf("job.completed %v covering %d devices, want %d jobs and %d devices", completed, total, jobs, good)
	}
	for id, n := range completed {
		if n != 1 {
			t.Errorf("job %s completed %d times", id, n)
		}
	}
	if n := count(events, model.EventDeviceUnmatched); n != 0 {
		t.Errorf("%d unmatched events", n)
	}
}

// TestEndToEndBadInputs sends an invalid job message and a callback with a
// requestId no job knows; each must become an event, not a crash or a drop.
func TestEndToEndBadInputs(t *testing.T) {
	st := startE2E(t, nil)
	msg := nats.NewMsg(queue.JobSubject(testAccount))
	msg.Data = []byte(`{"jobId":"bad-1","accountName":"` + testAccount + `","devices":[{"deviceIds":[{"kind":"eid","id":"123"}]}]}`)
	if err := st.bus.NC.PublishMsg(msg); err != nil {
		t.Fatal(err)
	}
	body := `{"requestId":"00000000-0000-4000-8000-000000000000","status":"SUCCESS","username":"cb-user","password":"cb-secret-e2e",` +
		`"deviceIds":[{"kind":"eid","id":"89049032000000000000000000000001"}]}`
	resp, err := http.Post("http://"+st.ingester+"/callbacks/thingspace", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("callback answered %d", resp.StatusCode)
	}
	events := collect(t, st, 30*time.Second, func(es []model.Event) bool {
		return count(es, model.EventJobRejected) >= 1 && count(es, model.EventDeviceUnmatched) >= 1
	})
	for _, e := range events {
		if e.Type == model.EventJobRejected {
			if e.JobID != "bad-1" || len(e.Problems) == 0 || !strings.Contains(e.Problems[0].String(), "devices[0]") {
				t.Errorf("job.rejected %+v does not name the device", e)
			}
		}
	}
	out := &syncBuffer{}
	if code := Main(context.Background(), []string{"status", "bad-1"}, st.envFor(out, nil)); code != ExitPartial ||
		!strings.Contains(out.String(), "rejected") || !strings.Contains(out.String(), "devices[0]") {
		t.Fatalf("status of a rejected job: exit %d, %q", code, out)
	}
	logs := st.stderr.String()
	if !strings.Contains(logs, `"msg":"starting"`) {
		t.Fatalf("no start-up line in the log:\n%s", logs)
	}
	for _, secret := range []string{"cb-secret-e2e", sim.DefaultClientSecret, sim.DefaultPassword} {
		if strings.Contains(logs, secret) {
			t.Errorf("secret %q reached the log", secret)
		}
	}
}

// TestDemoJSON runs the demo command as a user does and checks its summary.
func TestDemoJSON(t *testing.T) {
	out := &syncBuffer{}
	env := Env{Lookup: envconfig.MapLookuper(map[string]string{}), Stdin: strings.NewReader(""),
		Stdout: out, Stderr: &syncBuffer{}}
	code := Main(context.Background(), []string{"demo", "--devices", "300", "--fail-ratio", "0.1",
		"--rate-rps", "100", "--json"}, env)
	if code != ExitOK {
		t.Fatalf("demo exit %d: %s %s", code, out, env.Stderr)
	}
	var sum DemoSummary
	if err := json.Unmarshal([]byte(out.String()), &sum); err != nil {
		t.Fatalf("summary %q: %v", out, err)
	}
	if sum.Devices != 300 || sum.Succeeded+sum.Failed != 300 || sum.Failed == 0 || sum.Unmatched != 0 {
		t.Fatalf("summary %+v", sum)
	}
	if sum.Sim.DevicesResubmitted != 0 || sum.Sim.RateLimited != 0 {
		t.Errorf("simulator saw %d resubmitted devices and %d 429s", sum.Sim.DevicesResubmitted, sum.Sim.RateLimited)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"nope"},
		{"demo", "--devices", "0"},
		{"demo", "--fail-ratio", "2"},
		{"results", "--type", "bogus"},
		{"status"},
		{"status", "a.b"},
		{"import"},
		{"serve", "--roles", "cook"},
		{"callbacks", "register", "--account", "12"},
		{"callbacks", "foo"},
		{"callbacks"},
		{"import", "--job-size", "1500", "devices.csv"},
		{"publish", "--max-devices", "5"},
		{"demo", "--csv", "/nonexistent/devices.csv"},
	} {
		stderr := &syncBuffer{}
		env := Env{Lookup: envconfig.MapLookuper(map[string]string{}), Stdin: strings.NewReader(""),
			Stdout: &syncBuffer{}, Stderr: stderr}
		if code := Main(context.Background(), args, env); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, ExitUsage)
		}
		if stderr.String() == "" {
			t.Errorf("%v: no error message", args)
		}
	}
}

func TestServeNamesMissingSettings(t *testing.T) {
	stderr := &syncBuffer{}
	env := Env{Lookup: envconfig.MapLookuper(map[string]string{"TSFB_RATE_RPS": "0", "TSFB_WORKER_ACK_WAIT": "30"}),
		Stdin: strings.NewReader(""), Stdout: &syncBuffer{}, Stderr: stderr}
	if code := Main(context.Background(), []string{"serve"}, env); code != ExitUsage {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stderr.String(), "TSFB_WORKER_ACK_WAIT") {
		t.Fatalf("error does not name the variable: %s", stderr)
	}
	stderr = &syncBuffer{}
	env.Lookup = envconfig.MapLookuper(map[string]string{"TSFB_RATE_RPS": "0"})
	env.Stderr = stderr
	Main(context.Background(), []string{"serve"}, env)
	env.Lookup = envconfig.MapLookuper(map[string]string{"TSFB_RATE_RPS": "0", "TSFB_CHUNK_SIZE": "101",
		"TSFB_NATS_REPLICAS": "0"})
	Main(context.Background(), []string{"serve"}, env)
	for _, v := range []string{"TSFB_RATE_RPS", "TSFB_THINGSPACE_URL", "TSFB_CALLBACK_USERNAME",
		"TSFB_CHUNK_SIZE", "TSFB_NATS_REPLICAS"} {
		if !strings.Contains(stderr.String(), v) {
			t.Errorf("error does not name %s: %s", v, stderr)
		}
	}
}

// TestPublishRefusesReusedJobID: inside the duplicate window the stream
// would drop a second job with the same id unseen, so publish must say so.
func TestPublishRefusesReusedJobID(t *testing.T) {
	url := queuetest.Server(t)
	r := rand.New(rand.NewPCG(9, 10))
	job := func(d model.Device) string {
		data, _ := json.Marshal(model.Job{JobID: "pub-1", AccountName: testAccount, Devices: []model.Device{d}})
		return string(data)
	}
	first := job(model.RandomDevice(r))
	run := func(body string) (int, string) {
		out, errb := &syncBuffer{}, &syncBuffer{}
		env := Env{Lookup: envconfig.MapLookuper(map[string]string{"TSFB_NATS_URL": url}),
			Stdin: strings.NewReader(body), Stdout: out, Stderr: errb}
		return Main(context.Background(), []string{"publish", "-"}, env), out.String() + errb.String()
	}
	if code, out := run(first); code != ExitOK {
		t.Fatalf("first publish: %d %s", code, out)
	}
	if code, out := run(first); code != ExitOK || !strings.Contains(out, `"duplicate":true`) {
		t.Fatalf("same job again: %d %s", code, out)
	}
	code, out := run(job(model.RandomDevice(r)))
	if code != ExitPartial || !strings.Contains(out, "published before with other devices") {
		t.Fatalf("other devices under the same id: %d %s", code, out)
	}
}

// TestServeStopsRolesWhenOneCannotStart: with the callback port taken, serve
// must exit with the reason, and the worker it already started must stop.
func TestServeStopsRolesWhenOneCannotStart(t *testing.T) {
	st := startE2E(t, nil)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	env := map[string]string{}
	for k, v := range st.env {
		env[k] = v
	}
	env["TSFB_CALLBACK_ADDR"] = taken.Addr().String()
	stderr := &syncBuffer{}
	e := Env{Lookup: envconfig.MapLookuper(env), Stdin: strings.NewReader(""), Stdout: &syncBuffer{}, Stderr: stderr}
	done := make(chan int, 1)
	go func() { done <- Main(context.Background(), []string{"serve"}, e) }()
	select {
	case code := <-done:
		if code == ExitOK || !strings.Contains(stderr.String(), "TSFB_CALLBACK_ADDR") {
			t.Fatalf("exit %d: %s", code, stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not return after a role failed to start")
	}
}

// TestDemoRefusesWhatServeRefuses: a chunk larger than the API takes made
// every request of the demo fail while serve refused it at start-up.
func TestDemoRefusesWhatServeRefuses(t *testing.T) {
	errOut := &syncBuffer{}
	env := Env{Lookup: envconfig.MapLookuper(map[string]string{"TSFB_CHUNK_SIZE": "500"}),
		Stdin: strings.NewReader(""), Stdout: &syncBuffer{}, Stderr: errOut}
	code := Main(context.Background(), []string{"demo", "--devices", "10"}, env)
	if code != ExitUsage || !strings.Contains(errOut.String(), "TSFB_CHUNK_SIZE") {
		t.Fatalf("demo exit %d, want %d naming TSFB_CHUNK_SIZE:\n%s", code, ExitUsage, errOut)
	}
}
