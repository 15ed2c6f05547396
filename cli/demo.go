package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/importer"
	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/results"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/thingspace/sim"
)

// DemoAccount is the account the demo imports into.
const DemoAccount = "0000123456-00001"

// DemoSummary is what the demo prints; --json prints it as one object.
type DemoSummary struct {
	Devices   int     `json:"devices"`
	Jobs      int     `json:"jobs"`
	Requests  int     `json:"requests"`
	Succeeded int     `json:"succeeded"`
	Failed    int     `json:"failed"`
	TimedOut  int     `json:"timedOut"`
	Unmatched int     `json:"unmatched"`
	Rejected  int     `json:"rejected"`
	Seconds   float64 `json:"seconds"`
	// ImportSeconds is the part of Seconds spent reading and publishing
	// the CSV; the rest is submitting and waiting for callbacks.
	ImportSeconds float64 `json:"importSeconds"`
	// SubmitSeconds is when the last request.submitted event arrived,
	// counted from the start: after it the demo only waits for callbacks.
	SubmitSeconds float64 `json:"submitSeconds"`
	// RateRPS is the request budget the demo ran with.
	RateRPS float64   `json:"rateRps"`
	Sim     sim.Stats `json:"sim"`
}

type demoOptions struct {
	devices   int
	failRatio float64
	asJSON    bool
	rateRPS   float64
	rateBurst int
	timeout   time.Duration
	csv       string
	keep      bool
}

func runDemo(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "demo", "[--devices N] [--fail-ratio F] [--json]")
	var o demoOptions
	fs.IntVar(&o.devices, "devices", 1000, "devices in the generated sample CSV")
	fs.Float64Var(&o.failRatio, "fail-ratio", 0.05, "share of devices the simulator fails (0-1)")
	fs.BoolVar(&o.asJSON, "json", false, "print the summary as one JSON object")
	fs.Float64Var(&o.rateRPS, "rate-rps", 50, "API requests per second (the simulator enforces the same limit)")
	fs.IntVar(&o.rateBurst, "rate-burst", 10, "burst of the request budget")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up when results are not all in by then")
	fs.StringVar(&o.csv, "csv", "", "import this CSV instead of a generated sample (account column or the demo account)")
	fs.BoolVar(&o.keep, "keep", false, "keep the demo's NATS store instead of deleting it")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageErr("unexpected argument %q", pos[0])
	case o.devices < 1 && o.csv == "":
		return usageErr("--devices: %d, want at least 1", o.devices)
	case o.failRatio < 0 || o.failRatio > 1:
		return usageErr("--fail-ratio: %g, want 0 to 1", o.failRatio)
	case o.rateRPS <= 0:
		return usageErr("--rate-rps: %g, want above 0", o.rateRPS)
	case o.rateBurst < 1:
		return usageErr("--rate-burst: %d, want at least 1", o.rateBurst)
	}
	if o.csv != "" {
		if _, err := os.Stat(o.csv); err != nil {
			return usageErr("--csv: %v", err)
		}
	}
	s, err := loadSettings(ctx, env)
	if err != nil {
		return usageErr("%v", err)
	}
	log, err := newLogger(s.Log, env.Stderr, "warn")
	if err != nil {
		return usageErr("%v", err)
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush at exit
	sum, err := demo(ctx, env, s, o, log)
	if err != nil {
		return err
	}
	if o.asJSON {
		if err := json.NewEncoder(env.Stdout).Encode(sum); err != nil {
			return err
		}
	} else {
		printDemo(env.Stdout, sum)
	}
	if sum.Succeeded+sum.Failed+sum.TimedOut != sum.Devices {
		return &exitError{code: ExitPartial, err: fmt.Errorf("%d of %d devices have no final outcome",
			sum.Devices-sum.Succeeded-sum.Failed-sum.TimedOut, sum.Devices)}
	}
	return nil
}

func demo(ctx context.Context, env Env, s Settings, o demoOptions, log *zap.Logger) (DemoSummary, error) {
	start := time.Now()
	sum := DemoSummary{RateRPS: o.rateRPS}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "tsfallback-demo-")
	if err != nil {
		return sum, err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}

	// NATS: an embedded server on a free port, so a running serve is not
	// disturbed.
	ns, url, err := queue.StartEmbedded("127.0.0.1:0", filepath.Join(dir, "nats"))
	if err != nil {
		return sum, err
	}
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	s.Queue = queue.Config{URL: url}.Defaulted()
	bus, err := queue.Open(ctx, s.Queue, "tsfallback-demo", log)
	if err != nil {
		return sum, err
	}
	defer bus.Close()

	// The simulator enforces the same rate the workers keep to, so a 429
	// in the demo would show a fault of the rate limit.
	scfg := sim.DefaultConfig()
	scfg.FailRatio = o.failRatio
	scfg.RateRPS = o.rateRPS
	// Requests leave the workers spaced by the limiter but can arrive
	// closer together after crossing the network; a little headroom in the
	// simulator's bucket absorbs that jitter, as ThingSpace's quota
	// enforcement has to.
	scfg.RateBurst = o.rateBurst + 2
	scfg.CallbackRetryInterval = 2 * time.Second
	simulator, err := sim.New(scfg, log)
	if err != nil {
		return sum, err
	}
	defer simulator.Close()
	base, err := simulator.Start("127.0.0.1:0")
	if err != nil {
		return sum, err
	}

	cbPassword := randomSecret()
	s.ThingSpace = thingspace.Config{
		BaseURL: base, ClientID: scfg.ClientID, ClientSecret: config.Secret(scfg.ClientSecret),
		Username: scfg.Username, Password: config.Secret(scfg.Password),
	}.Defaulted()
	s.Rate.RPS, s.Rate.Burst = o.rateRPS, o.rateBurst
	s.Worker = s.Worker.Defaulted()
	s.Callback = s.Callback.Defaulted()
	s.Callback.Addr = "127.0.0.1:0"
	s.Callback.Username, s.Callback.Password = "tsfallback-demo", config.Secret(cbPassword)
	s.Callback.UnmatchedWait = 10 * time.Second
	// The same checks as serve's, on what the demo runs with: a setting
	// that serve would refuse must not make the demo fail every request.
	if err := validateFor(s, allRoles); err != nil {
		return sum, usageErr("%v", err)
	}

	// Roles run until the results are in.
	rolesCtx, stopRoles := context.WithCancel(ctx)
	defer stopRoles()
	addrCh := make(chan string, 1)
	rolesDone := make(chan error, 1)
	go func() {
		rolesDone <- runRoles(rolesCtx, s, allRoles, bus, log, func(a string) { addrCh <- a })
	}()
	var ingester string
	select {
	case ingester = <-addrCh:
	case err := <-rolesDone:
		return sum, fmt.Errorf("starting the roles: %w", err)
	case <-ctx.Done():
		return sum, ctx.Err()
	}

	client, err := thingspace.New(s.ThingSpace, log)
	if err != nil {
		return sum, err
	}
	err = client.RegisterCallback(ctx, DemoAccount, thingspace.Registration{
		Name: thingspace.ServiceDeviceProfile, URL: "http://" + ingester + "/callbacks/thingspace",
		Username: s.Callback.Username.Reveal(), Password: cbPassword,
	})
	if err != nil {
		return sum, fmt.Errorf("registering the demo's callback URL: %w", err)
	}

	// Count results from the start of the fresh stream, while importing.
	tally := newDemoTally(start)
	readCtx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	readDone := make(chan error, 1)
	go func() {
		readDone <- results.Read(readCtx, bus.JS, results.Options{Account: DemoAccount, Follow: true},
			func(e model.Event, _ []byte) error { tally.add(e); return nil })
	}()

	csvPath := o.csv
	if csvPath == "" {
		csvPath = filepath.Join(dir, "devices.csv")
		if err := writeSampleFile(csvPath, o.devices); err != nil {
			return sum, err
		}
	}
	var progress io.Writer
	if !o.asJSON {
		progress = env.Stderr
	}
	res, err := runImporter(ctx, bus.NC, s.Import, importer.Options{
		Files: []string{csvPath}, Account: DemoAccount, Progress: progress,
	}, Env{Stdin: env.Stdin}, log)
	if err != nil {
		return sum, fmt.Errorf("importing %s: %w", csvPath, err)
	}
	sum.Devices, sum.Jobs, sum.Rejected = res.Devices, res.Jobs, res.Rejected
	sum.ImportSeconds = time.Since(start).Seconds()

	// Wait for every job's job.completed.
	waitErr := tally.wait(ctx, res.Jobs)
	stopReading()
	<-readDone
	stopRoles()
	if err := <-rolesDone; err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("role_stopped_with_error", zap.Error(err))
	}
	tally.fill(&sum)
	sum.Sim = simulator.Stats()
	sum.Seconds = time.Since(start).Seconds()
	if waitErr != nil {
		return sum, fmt.Errorf("waiting for results (%d of %d jobs completed): %w",
			tally.completedJobs(), res.Jobs, waitErr)
	}
	return sum, nil
}

func writeSampleFile(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := importer.WriteSample(f, n, uint64(time.Now().UnixNano())); err != nil {
		f.Close()
		return fmt.Errorf("writing the sample CSV: %w", err)
	}
	return f.Close()
}

func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// demoTally counts the demo's events.
type demoTally struct {
	start      time.Time
	lastSubmit time.Time
	mu         sync.Mutex
	counts     map[string]int
	completed  map[string]bool
	changed    chan struct{}
}

func newDemoTally(start time.Time) *demoTally {
	return &demoTally{start: start, counts: map[string]int{}, completed: map[string]bool{}, changed: make(chan struct{}, 1)}
}

func (t *demoTally) add(e model.Event) {
	t.mu.Lock()
	t.counts[e.Type]++
	if e.Type == model.EventRequestSubmitted {
		t.lastSubmit = time.Now()
	}
	if e.Type == model.EventJobCompleted {
		t.completed[e.JobID] = true
	}
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func (t *demoTally) completedJobs() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.completed)
}

func (t *demoTally) wait(ctx context.Context, jobs int) error {
	for t.completedJobs() < jobs {
		select {
		case <-t.changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (t *demoTally) fill(s *DemoSummary) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Requests = t.counts[model.EventRequestSubmitted]
	s.Succeeded = t.counts[model.EventDeviceSucceeded]
	s.Failed = t.counts[model.EventDeviceFailed]
	s.TimedOut = t.counts[model.EventDeviceTimedOut]
	s.Unmatched = t.counts[model.EventDeviceUnmatched]
	if !t.lastSubmit.IsZero() {
		s.SubmitSeconds = t.lastSubmit.Sub(t.start).Seconds()
	}
}

func printDemo(w io.Writer, s DemoSummary) {
	fmt.Fprintf(w, "\ntsfallback demo: %s in %s, %s at %g requests/s\n",
		plural(s.Devices, "device"), plural(s.Jobs, "job"), plural(s.Requests, "API request"), s.RateRPS)
	fmt.Fprintf(w, "  succeeded  %d\n  failed     %d\n  timed out  %d\n  unmatched  %d\n",
		s.Succeeded, s.Failed, s.TimedOut, s.Unmatched)
	if s.Rejected > 0 {
		fmt.Fprintf(w, "  rejected rows %d\n", s.Rejected)
	}
	fmt.Fprintf(w, "  %.1f s in all: import done at %.1f s, last request submitted at %.1f s\n",
		s.Seconds, s.ImportSeconds, s.SubmitSeconds)
	fmt.Fprintf(w, "  simulator: %d callbacks sent, %d rate-limited answers, %d devices submitted twice\n",
		s.Sim.CallbacksSent, s.Sim.RateLimited, s.Sim.DevicesResubmitted)
}
