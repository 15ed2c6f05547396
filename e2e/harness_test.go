//go:build unix

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/results"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/thingspace/sim"
)

// account is the one account every e2e job is for.
const account = "0000123456-00001"

// Timeouts of the harness. They bound waits; none of them is a sleep.
const (
	buildTimeout = 5 * time.Minute
	readyTimeout = 20 * time.Second
	// stopTimeout bounds the wait for a killed process to be reaped.
	stopTimeout = 10 * time.Second
	// pollEvery is how often the harness looks again while it waits.
	pollEvery = 50 * time.Millisecond
	tailLines = 40
)

// bin holds the paths of the binaries TestMain builds.
var bin struct {
	tsfallback, nats string
	err              error
}

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "tsfb-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(2)
	}
	if !testing.Short() {
		bin.err = build(dir)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build compiles tsfallback and nats-server (the version go.mod requires)
// into dir, without -race: the children need no race detector, and
// leaving it out saves the CPU the tests measure with.
func build(dir string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("finding the go tool: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bin.tsfallback = filepath.Join(dir, "tsfallback")
	bin.nats = filepath.Join(dir, "nats-server")
	for _, b := range []struct{ out, pkg string }{
		{bin.tsfallback, "./cmd/tsfallback"},
		{bin.nats, "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", b.out, b.pkg)
		cmd.Dir = ".." // the module root: this package is e2e/
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %w\n%s", b.pkg, err, out)
		}
	}
	return nil
}

// needBinaries skips in -short mode and fails when the build failed.
func needBinaries(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: skipped in -short mode")
	}
	if bin.err != nil {
		t.Fatalf("e2e: %v", bin.err)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is one child process, in a process group of its own so that a kill
// reaches everything it started.
type proc struct {
	name string
	path string
	args []string
	env  []string
	log  string // stderr (and stdout) of every run, appended

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	state *os.ProcessState
}

// startProc starts path with args and env; the test's cleanup kills it.
func startProc(t testing.TB, name, path string, args, env []string, log string) *proc {
	t.Helper()
	p := &proc{name: name, path: path, args: args, env: env, log: log}
	if err := p.start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- last lines of %s (%s) ---\n%s", p.name, p.log, tail(p.log, tailLines))
			keepLog(t, p)
		}
	})
	return p
}

// keepLog copies a failed test's process log into TSFB_E2E_KEEP_LOGS, when
// it names a directory, since the test's own directory is removed.
func keepLog(t testing.TB, p *proc) {
	dir := os.Getenv("TSFB_E2E_KEEP_LOGS")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(p.log)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, t.Name()+"-"+p.name+".log"), b, 0o600)
	}
	if err != nil {
		t.Logf("keeping the log of %s: %v", p.name, err)
	}
}

// start runs the process (again, after it exited).
func (p *proc) start() error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cmd, p.done, p.state = cmd, done, nil
	p.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		f.Close()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// signal sends sig to the process group.
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != nil {
		return nil
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// wait waits up to d for the process to exit; it reports whether it did.
func (p *proc) wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// exitCode is the exit status, -1 for a signal, -2 while running.
func (p *proc) exitCode() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == nil {
		return -2
	}
	return p.state.ExitCode()
}

// kill ends the process group at once and reaps it, within stopTimeout.
func (p *proc) kill() {
	_ = p.signal(syscall.SIGKILL)
	p.wait(stopTimeout)
}

// logCount counts the lines of the log that contain s.
func (p *proc) logCount(s string) int {
	f, err := os.Open(p.log)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(pollEvery)
	}
}

// clusterConfig shapes one deployment under test.
type clusterConfig struct {
	Workers int
	// RPS and Burst are the deployment's budget (TSFB_RATE_*); the
	// simulator enforces RPS with Burst+SimHeadroom.
	RPS   float64
	Burst int
	// SimHeadroom absorbs the network jitter between the limiter and the
	// simulator's bucket, as the demo does (cli/demo.go).
	SimHeadroom int
	ChunkSize   int
	Concurrency int
	AckWait     time.Duration
	Shutdown    time.Duration
	// Quiet logs at warn instead of debug (the benchmark).
	Quiet bool
}

func (c clusterConfig) defaulted() clusterConfig {
	if c.Workers == 0 {
		c.Workers = 3
	}
	if c.RPS == 0 {
		c.RPS = 20
	}
	if c.Burst == 0 {
		c.Burst = 3
	}
	if c.SimHeadroom == 0 {
		c.SimHeadroom = 2
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = 20
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.AckWait == 0 {
		c.AckWait = 6 * time.Second
	}
	if c.Shutdown == 0 {
		c.Shutdown = 10 * time.Second
	}
	return c
}

// cluster is one nats-server process, the simulator (in this process),
// Workers worker processes and one process with the other roles.
type cluster struct {
	t   testing.TB
	cfg clusterConfig
	dir string

	natsPort int
	natsURL  string
	nats     *proc

	sim     *sim.Sim
	simBase string
	accepts *acceptLog

	cbAddr, cbUser, cbPass string
	env                    []string
	workers                []*proc
	front                  *proc

	bus *queue.Bus
}

// newCluster starts everything and returns when the workers have joined
// the rate limit membership, so that their shares are right from the first
// request.
func newCluster(t testing.TB, cfg clusterConfig) *cluster {
	t.Helper()
	needBinaries(t)
	cfg = cfg.defaulted()
	c := &cluster{t: t, cfg: cfg, dir: t.TempDir(), cbUser: "e2e-callback", cbPass: randHex()}
	c.startNATS()
	c.startSim()

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	bus, err := queue.Open(ctx, queue.Config{URL: c.natsURL}, "tsfallback-e2e", zap.NewNop())
	if err != nil {
		t.Fatalf("connecting to nats-server: %v", err)
	}
	t.Cleanup(bus.Close)
	c.bus = bus

	c.cbAddr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	c.env = c.childEnv()
	c.front = startProc(t, "front", bin.tsfallback, []string{"serve", "--roles", "ingester,correlator,sweeper"},
		c.env, filepath.Join(c.dir, "front.log"))
	for i := range cfg.Workers {
		c.startWorker(i)
	}
	eventually(t, readyTimeout, "the ingester to listen", func() bool {
		conn, err := net.DialTimeout("tcp", c.cbAddr, time.Second)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
	c.registerCallback(ctx)
	c.waitMembers(cfg.Workers)
	return c
}

func (c *cluster) startWorker(i int) *proc {
	name := "worker" + strconv.Itoa(i)
	p := startProc(c.t, name, bin.tsfallback, []string{"serve", "--roles", "worker"}, c.env,
		filepath.Join(c.dir, name+".log"))
	c.workers = append(c.workers, p)
	return p
}

func (c *cluster) startNATS() {
	c.natsPort = freePort(c.t)
	c.natsURL = "nats://127.0.0.1:" + strconv.Itoa(c.natsPort)
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(c.natsPort), "-js",
		"-sd", filepath.Join(c.dir, "nats-store"), "-n", "tsfb-e2e"}
	c.nats = startProc(c.t, "nats-server", bin.nats, args, os.Environ(), filepath.Join(c.dir, "nats.log"))
	c.waitNATS()
}

// waitNATS waits until the server answers JetStream requests.
func (c *cluster) waitNATS() {
	c.t.Helper()
	eventually(c.t, readyTimeout, "nats-server to serve JetStream", func() bool {
		nc, err := nats.Connect(c.natsURL, nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err == nil
	})
}

// restartNATS stops nats-server with SIGTERM and starts it again on the
// same port with the same store.
func (c *cluster) restartNATS() {
	c.t.Helper()
	if err := c.nats.signal(syscall.SIGTERM); err != nil {
		c.t.Fatalf("stopping nats-server: %v", err)
	}
	if !c.nats.wait(stopTimeout) {
		c.t.Fatalf("nats-server did not stop within %s of SIGTERM", stopTimeout)
	}
	if err := c.nats.start(); err != nil {
		c.t.Fatalf("restarting nats-server: %v", err)
	}
	c.waitNATS()
}

func (c *cluster) startSim() {
	scfg := sim.DefaultConfig()
	scfg.RateRPS = c.cfg.RPS
	scfg.RateBurst = c.cfg.Burst + c.cfg.SimHeadroom
	// Resends come quickly and often, so that a NATS outage shorter than
	// their span loses no callback.
	scfg.CallbackRetryInterval = 2 * time.Second
	scfg.CallbackMaxSends = 10
	s, err := sim.New(scfg, zap.NewNop())
	if err != nil {
		c.t.Fatal(err)
	}
	c.accepts = &acceptLog{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	srv := &http.Server{Handler: c.accepts.wrap(s.Handler()), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	c.t.Cleanup(func() {
		_ = srv.Close()
		_ = s.Close()
	})
	c.sim = s
	c.simBase = "http://" + ln.Addr().String() + "/api"
}

// childEnv is the environment of the tsfallback processes: this process's
// without any TSFB_ variable, plus the deployment's.
func (c *cluster) childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TSFB_") {
			env = append(env, kv)
		}
	}
	level := "debug"
	if c.cfg.Quiet {
		level = "warn"
	}
	d := sim.DefaultConfig()
	return append(env,
		"TSFB_LOG_LEVEL="+level,
		"TSFB_NATS_URL="+c.natsURL,
		"TSFB_THINGSPACE_URL="+c.simBase,
		"TSFB_THINGSPACE_CLIENT_ID="+d.ClientID,
		"TSFB_THINGSPACE_CLIENT_SECRET="+d.ClientSecret,
		"TSFB_THINGSPACE_USERNAME="+d.Username,
		"TSFB_THINGSPACE_PASSWORD="+d.Password,
		"TSFB_RATE_RPS="+strconv.FormatFloat(c.cfg.RPS, 'f', -1, 64),
		"TSFB_RATE_BURST="+strconv.Itoa(c.cfg.Burst),
		"TSFB_CHUNK_SIZE="+strconv.Itoa(c.cfg.ChunkSize),
		"TSFB_WORKER_CONCURRENCY="+strconv.Itoa(c.cfg.Concurrency),
		"TSFB_WORKER_ACK_WAIT="+c.cfg.AckWait.String(),
		"TSFB_WORKER_SHUTDOWN_TIMEOUT="+c.cfg.Shutdown.String(),
		"TSFB_CALLBACK_ADDR="+c.cbAddr,
		"TSFB_CALLBACK_USERNAME="+c.cbUser,
		"TSFB_CALLBACK_PASSWORD="+c.cbPass,
		"TSFB_CALLBACK_UNMATCHED_WAIT=20s",
	)
}

func (c *cluster) registerCallback(ctx context.Context) {
	c.t.Helper()
	d := sim.DefaultConfig()
	client, err := thingspace.New(thingspace.Config{BaseURL: c.simBase, ClientID: d.ClientID,
		ClientSecret: config.Secret(d.ClientSecret), Username: d.Username,
		Password: config.Secret(d.Password)}.Defaulted(), zap.NewNop())
	if err != nil {
		c.t.Fatal(err)
	}
	err = client.RegisterCallback(ctx, account, thingspace.Registration{Name: sim.DefaultCallbackService,
		URL: "http://" + c.cbAddr + "/callbacks/thingspace", Username: c.cbUser, Password: c.cbPass})
	if err != nil {
		c.t.Fatalf("registering the callback URL: %v", err)
	}
}

// members counts the live membership keys of the rate limit.
func (c *cluster) members() int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l, err := c.bus.Workers.ListKeys(ctx)
	if err != nil {
		return -1
	}
	n := 0
	for k := range l.Keys() {
		if strings.HasPrefix(k, "member.") {
			n++
		}
	}
	return n
}

func (c *cluster) waitMembers(n int) {
	c.t.Helper()
	eventually(c.t, readyTimeout, fmt.Sprintf("%d rate limit members", n), func() bool {
		return c.members() == n
	})
}

// makeJobs returns n jobs of size fresh valid devices.
func makeJobs(prefix string, n, size int) []model.Job {
	r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	jobs := make([]model.Job, n)
	for i := range jobs {
		devs := make([]model.Device, size)
		for k := range devs {
			devs[k] = model.RandomDevice(r)
		}
		jobs[i] = model.Job{JobID: fmt.Sprintf("%s-%d", prefix, i), AccountName: account, Devices: devs}
	}
	return jobs
}

// publish sends the jobs the way a producer does, with their ids as
// Nats-Msg-Id.
func (c *cluster) publish(jobs []model.Job) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, j := range jobs {
		data, err := json.Marshal(j)
		if err != nil {
			c.t.Fatal(err)
		}
		msg := nats.NewMsg(queue.JobSubject(j.AccountName))
		msg.Data = data
		msg.Header.Set(jetstream.MsgIDHeader, j.JobID)
		if _, err := c.bus.JS.PublishMsg(ctx, msg); err != nil {
			c.t.Fatalf("publishing job %s: %v", j.JobID, err)
		}
	}
}

// acceptLog records when the simulator accepted each setfallbackattribute
// request, for the achieved rate.
type acceptLog struct {
	mu    sync.Mutex
	times []time.Time
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (a *acceptLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/setfallbackattribute") {
			h.ServeHTTP(w, r)
			return
		}
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		if sw.status == http.StatusOK || sw.status == http.StatusAccepted {
			a.mu.Lock()
			a.times = append(a.times, time.Now())
			a.mu.Unlock()
		}
	})
}

func (a *acceptLog) snapshot() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times...)
}

// rate is the sustained accepted rate: the requests after the first burst
// over the time from the first to the last. A token bucket allows at most
// burst + R*T requests in T, so this stays at or below R when the limit
// holds.
func rate(times []time.Time, burst int) (perSecond float64, span time.Duration) {
	if len(times) < 2 {
		return 0, 0
	}
	span = times[len(times)-1].Sub(times[0])
	if span <= 0 {
		return 0, span
	}
	n := max(len(times)-1-burst, 0)
	return float64(n) / span.Seconds(), span
}

// tally follows the result events of the account.
type tally struct {
	mu        sync.Mutex
	submitted int
	completed map[string]int
}

// follow reads result events into a fresh tally until the test ends. A
// read cut by a NATS restart starts again from the stream's start.
func (c *cluster) follow() *tally {
	tl := &tally{completed: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.t.Cleanup(func() {
		cancel()
		<-done
	})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			tl.mu.Lock()
			tl.submitted, tl.completed = 0, map[string]int{}
			tl.mu.Unlock()
			err := results.Read(ctx, c.bus.JS, results.Options{Account: account, Follow: true},
				tl.count)
			if err != nil && ctx.Err() == nil {
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
	return tl
}

// count tallies one event read from the results stream.
func (tl *tally) count(e model.Event, _ []byte) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	switch e.Type {
	case model.EventRequestSubmitted:
		tl.submitted++
	case model.EventJobCompleted:
		tl.completed[e.JobID]++
	}
	return nil
}

func (tl *tally) counts() (submitted, completed int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.submitted, len(tl.completed)
}

// waitSubmitted waits until at least n requests were submitted.
func (c *cluster) waitSubmitted(tl *tally, n int, d time.Duration) {
	c.t.Helper()
	eventually(c.t, d, fmt.Sprintf("%d request.submitted events", n), func() bool {
		s, _ := tl.counts()
		return s >= n
	})
}

// waitCompleted waits until every job has job.completed.
func (c *cluster) waitCompleted(tl *tally, jobs int, d time.Duration) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		s, n := tl.counts()
		if n >= jobs {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after %s: %d of %d jobs completed, %d requests submitted; sim %+v",
				d, n, jobs, s, c.sim.Stats())
		}
		time.Sleep(pollEvery)
	}
}

// outcome is what the result stream says about a run.
type outcome struct {
	final     map[string]int // jobId/deviceKey -> final events
	completed map[string]int // jobId -> job.completed events
	types     map[string]int
}

// readAll reads every stored event of the account once.
func (c *cluster) readAll() outcome {
	c.t.Helper()
	o := outcome{final: map[string]int{}, completed: map[string]int{}, types: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	err := results.Read(ctx, c.bus.JS, results.Options{Account: account}, func(e model.Event, _ []byte) error {
		o.types[e.Type]++
		switch {
		case model.IsFinalDevice(e.Type) && e.Device != nil:
			o.final[e.JobID+"/"+e.Device.Key()]++
		case e.Type == model.EventJobCompleted:
			o.completed[e.JobID]++
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("reading the results: %v", err)
	}
	return o
}

// checkExactlyOnce fails unless every device of every job has exactly one
// final event and every job exactly one job.completed.
func (c *cluster) checkExactlyOnce(jobs []model.Job) outcome {
	c.t.Helper()
	return c.checkOutcome(jobs, c.readAll())
}

// checkOutcome holds the events read, o, to the exactly-once claim.
func (c *cluster) checkOutcome(jobs []model.Job, o outcome) outcome {
	c.t.Helper()
	missing, dup := 0, 0
	for _, j := range jobs {
		if n := o.completed[j.JobID]; n != 1 {
			c.t.Errorf("job %s: %d job.completed events, want 1", j.JobID, n)
		}
		for _, d := range j.Devices {
			switch n := o.final[j.JobID+"/"+d.Key()]; {
			case n == 0:
				missing++
			case n > 1:
				dup++
			}
		}
	}
	if missing > 0 || dup > 0 {
		c.t.Errorf("%d devices without a final event, %d with more than one", missing, dup)
	}
	if n := o.types[model.EventDeviceUnmatched]; n > 0 {
		c.t.Errorf("%d device.unmatched events", n)
	}
	c.t.Logf("events by type: %v", o.types)
	return o
}

// busiestWorker returns the running worker that has submitted the most
// chunks so far: it surely holds jobs.
func (c *cluster) busiestWorker() *proc {
	var best *proc
	bestN := -1
	for _, w := range c.workers {
		if w.exitCode() != -2 {
			continue
		}
		if n := w.logCount("worker_chunk_submitted"); n > bestN {
			best, bestN = w, n
		}
	}
	return best
}

// report logs the run's achieved rate and the simulator's counters, and
// returns the utilisation (sustained rate / R) and overshoot (most
// accepted requests in one second / R).
func (c *cluster) report(t testing.TB) (util, overshoot float64, st sim.Stats) {
	st = c.sim.Stats()
	r, span := rate(c.accepts.snapshot(), c.cfg.Burst)
	util = r / c.cfg.RPS
	overshoot = float64(st.MaxRequestsPerSecond) / c.cfg.RPS
	t.Logf("workers %d, R %g: %d requests accepted over %s, sustained %.2f/s = %.3f R, "+
		"max %d in one second = %.2f R; rateLimited %d, devicesResubmitted %d, logins %d",
		c.cfg.Workers, c.cfg.RPS, st.RequestsAccepted, span.Round(time.Millisecond), r, util,
		st.MaxRequestsPerSecond, overshoot, st.RateLimited, st.DevicesResubmitted, st.Logins)
	return util, overshoot, st
}

func randHex() string {
	return strconv.FormatUint(rand.Uint64(), 16) + strconv.FormatUint(rand.Uint64(), 16)
}
