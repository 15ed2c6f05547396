package worker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/ratelimit"
)

// Submitter sends one setfallbackattribute request; *thingspace.Client is
// one.
type Submitter interface {
	SetFallbackAttribute(ctx context.Context, req model.SetFallbackRequest) (string, error)
}

// Loop settings.
const (
	// fetchWait bounds one pull, so that the loop looks again at its
	// share, pauses and lost streams at least this often; a stop ends the
	// pull at once.
	fetchWait = time.Second
	// ackPendingProcesses sizes MaxAckPending, which counts the jobs in
	// flight across every process of the consumer: room for this many
	// processes, each with all its slots busy.
	ackPendingProcesses = 64
	// recoverBackoff is the pause after a failed pull before the next.
	recoverBackoff = time.Second
	// defaultCheckEvery is how often an idle worker checks that the
	// server still has its streams and buckets: a loss the fetch does not
	// see (a bucket) is found within it.
	defaultCheckEvery = 10 * time.Second
)

// ErrNoConsumer wraps a failure to create the jobs consumer.
var ErrNoConsumer = errors.New("worker: cannot create the jobs consumer")

// Stats are counters since the worker started, for metrics and tests.
type Stats struct {
	JobsAccepted atomic.Int64
	JobsRejected atomic.Int64
	JobsDone     atomic.Int64 // acknowledged after every chunk was settled
	JobsFailed   atomic.Int64 // given up after the last delivery
	JobsRetried  atomic.Int64 // negatively acknowledged for a later delivery
	// JobsHandedBack counts jobs given back untried by a halted worker.
	JobsHandedBack atomic.Int64
	Requests       atomic.Int64 // requests ThingSpace accepted
	ChunksSkip     atomic.Int64 // chunks the journal already had
	ChunksFailed   atomic.Int64 // chunks ThingSpace refused for good
	// ClaimWaits counts the looks a delivery took at a chunk another
	// delivery of the same job was submitting (see claim.go).
	ClaimWaits  atomic.Int64
	RateLimited atomic.Int64 // 429 and 503 answers
	Retries     atomic.Int64 // requests sent again after a transient error
	// PossibleDuplicates counts requests sent again after an ambiguous
	// failure, and journal entries found written by another delivery.
	PossibleDuplicates atomic.Int64
	// AlreadyPublished counts events a redelivery found in the results
	// stream, so did not publish again.
	AlreadyPublished atomic.Int64
	// FetchPauses counts the times the fetch loop waited out a pause of
	// the deployment instead of fetching.
	FetchPauses atomic.Int64
	// Recreated counts the times streams, buckets or the consumer were
	// found lost and re-created.
	Recreated atomic.Int64
}

// Worker consumes jobs and submits them.
type Worker struct {
	cfg Config
	bus *queue.Bus
	api Submitter
	lim *ratelimit.Limiter
	tr  *progress.Tracker
	log *zap.Logger

	stats Stats
	// backoff is the base of the retry waits; tests shorten it.
	backoff backoffPolicy

	mu   sync.Mutex
	cons jetstream.Consumer
	// halted is set when the ThingSpace client refuses every call for good
	// (thingspace.ErrLoginStopped): fetching stops, so that the jobs stay
	// in the stream instead of spending their deliveries on a credentials
	// problem.
	halted atomic.Bool

	// est is the moving average of requests per job, for jobSlots.
	est *chunkEstimate
	// inflight is the number of jobs being processed.
	inflight atomic.Int64
	// checkEvery (a time.Duration) is the interval of the loss check;
	// tests shorten it.
	checkEvery atomic.Int64
	// kick asks the fetch loop to check for lost streams and buckets now,
	// after a job met an error of the bus.
	kick chan struct{}

	// ownerKey names this process in chunk claims (see claim.go).
	ownerOnce sync.Once
	ownerKey  string
	// absent holds when each claim owner was first found without a
	// member key; claimGrace is how long that must last (tests shorten it).
	// held are the claim keys this process's deliveries hold.
	missMu     sync.Mutex
	absent     map[string]time.Time
	held       map[string]bool
	unreleased map[string]unreleased
	claimGrace time.Duration
}

// haltRedelivery delays the redelivery of a job handed back by a halted
// worker, so that it does not come straight back to another worker that
// shares the same bad credentials.
const haltRedelivery = 30 * time.Second

// errHalted: the job was not tried because the worker has halted.
var errHalted = errors.New("worker: halted, the ThingSpace client stopped logging in")

// Halted reports whether the worker stopped fetching because the
// ThingSpace client gave up logging in. Only a new process (with fixed
// credentials) starts it again: a restart loop would lock the account.
func (w *Worker) Halted() bool { return w.halted.Load() }

// halt stops fetching for good; it logs once.
func (w *Worker) halt(err error) {
	if w.halted.CompareAndSwap(false, true) {
		w.log.Error("worker_halted", zap.Error(err))
	}
}

// New returns a worker; Run starts it.
func New(cfg Config, bus *queue.Bus, api Submitter, lim *ratelimit.Limiter,
	tr *progress.Tracker, log *zap.Logger) (*Worker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case bus == nil || bus.JS == nil || bus.Requests == nil || bus.Chunks == nil:
		return nil, errors.New("worker: a bus with the requests and chunks buckets is required")
	case api == nil:
		return nil, errors.New("worker: a ThingSpace submitter is required")
	case lim == nil:
		return nil, errors.New("worker: a rate limiter is required")
	case tr == nil:
		return nil, errors.New("worker: a progress tracker is required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	w := &Worker{
		cfg:     cfg,
		bus:     bus,
		api:     api,
		lim:     lim,
		tr:      tr,
		log:     log.Named("worker"),
		backoff: defaultBackoff,
		est:     newChunkEstimate(cfg),
		kick:    make(chan struct{}, 1),

		claimGrace: queue.WorkersTTL,
	}
	w.checkEvery.Store(int64(defaultCheckEvery))
	return w, nil
}

// InFlight returns the number of jobs this worker is processing.
func (w *Worker) InFlight() int { return int(w.inflight.Load()) }

// slots returns how many jobs this worker may hold now (see jobSlots).
func (w *Worker) slots() int {
	share, _ := w.lim.Limit()
	return jobSlots(w.cfg.Concurrency, float64(share), horizon(w.cfg.AckWait), w.est.get())
}

// askCheck has the fetch loop look for lost streams and buckets soon.
func (w *Worker) askCheck() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Stats returns the worker's counters.
func (w *Worker) Stats() *Stats { return &w.stats }

// Run consumes jobs until ctx ends, then stops in two stages: it fetches no
// more jobs and lets those in flight finish within ShutdownTimeout, then
// cancels them. A cancelled job is left unacknowledged for redelivery; its
// journal keeps the chunks already submitted from being sent again.
func (w *Worker) Run(ctx context.Context) error {
	if _, err := w.ensureConsumer(ctx); err != nil {
		return err
	}
	w.log.Info("worker_started", zap.String("consumer", w.cfg.Consumer),
		zap.Int("concurrency", w.cfg.Concurrency), zap.Int("chunk_size", w.cfg.ChunkSize))

	// Jobs get a context of their own, so that stopping the fetch loop
	// does not cut a request in half.
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	var wg sync.WaitGroup
	// freed is signalled when a job ends, so that the loop fetches again.
	freed := make(chan struct{}, 1)
	start := func(msg jetstream.Msg) {
		w.inflight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				w.inflight.Add(-1)
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
			w.handle(jobCtx, msg)
		}()
	}
	lastCheck := time.Now()

	for ctx.Err() == nil {
		if w.halted.Load() {
			// The other roles of the process go on; this one waits
			// for the stop.
			<-ctx.Done()
			break
		}
		// While the deployment is paused, a new job could not start
		// anyway: leave it in the stream for whoever is free later.
		if d := time.Until(w.lim.PausedUntil()); d > 0 {
			w.stats.FetchPauses.Add(1)
			w.log.Debug("worker_fetch_paused", zap.Duration("pause", d))
			if sleep(ctx, d) != nil {
				break
			}
		}
		select {
		case <-w.kick:
			w.recover(ctx)
			lastCheck = time.Now()
		default:
			if time.Since(lastCheck) >= time.Duration(w.checkEvery.Load()) {
				w.recover(ctx)
				lastCheck = time.Now()
			}
		}
		w.retryReleases(ctx)
		// Fetch only what this process's share can start soon; the
		// share changes with the other processes' demand, so look again
		// after fetchWait even when no job ended.
		n := w.slots() - w.InFlight()
		if n <= 0 {
			if waitFreed(ctx, freed, fetchWait) != nil {
				break
			}
			continue
		}
		_, err := w.fetch(ctx, n, start)
		if err != nil && ctx.Err() == nil {
			w.log.Warn("worker_fetch_failed", zap.Error(err))
			w.recover(ctx)
			lastCheck = time.Now()
			_ = sleep(ctx, recoverBackoff)
		}
	}

	w.log.Info("worker_stopping", zap.Duration("shutdown_timeout", w.cfg.ShutdownTimeout))
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	t := time.NewTimer(w.cfg.ShutdownTimeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		w.log.Warn("worker_shutdown_timeout", zap.Duration("shutdown_timeout", w.cfg.ShutdownTimeout))
		cancelJobs()
		<-done
	}
	w.log.Info("worker_stopped")
	return nil
}

// waitFreed waits until a job ends, d passes or ctx ends.
func waitFreed(ctx context.Context, freed <-chan struct{}, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-freed:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// fetch pulls up to n jobs and hands each to start; it returns how many it
// started.
func (w *Worker) fetch(ctx context.Context, n int, start func(jetstream.Msg)) (int, error) {
	cons, err := w.consumer(ctx)
	if err != nil {
		return 0, err
	}
	// The pull ends with ctx, so that a stop does not wait out fetchWait.
	// Cancelling it unsubscribes its inbox, and the server delivers no
	// message to a pull whose reply subject has lost its interest.
	fctx, cancel := context.WithTimeout(ctx, fetchWait)
	defer cancel()
	batch, err := cons.Fetch(n, jetstream.FetchContext(fctx))
	if err != nil {
		return 0, fmt.Errorf("fetching jobs: %w", err)
	}
	got := 0
	for msg := range batch.Messages() {
		got++
		start(msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) &&
		!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return got, fmt.Errorf("fetching jobs: %w", err)
	}
	return got, nil
}

func (w *Worker) consumer(ctx context.Context) (jetstream.Consumer, error) {
	w.mu.Lock()
	cons := w.cons
	w.mu.Unlock()
	if cons != nil {
		return cons, nil
	}
	return w.ensureConsumer(ctx)
}

// ensureConsumer creates or updates the durable jobs consumer. Every
// worker process does it at start; the settings are the same for all.
func (w *Worker) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	cons, err := w.bus.JS.CreateOrUpdateConsumer(ctx, queue.StreamJobs, jetstream.ConsumerConfig{
		Durable:       w.cfg.Consumer,
		Description:   "tsfallback workers",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.cfg.AckWait,
		MaxDeliver:    w.cfg.MaxDeliver,
		MaxAckPending: maxAckPending(w.cfg.Concurrency, w.lim.Budget().RPS, horizon(w.cfg.AckWait)),
	})
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrNoConsumer, w.cfg.Consumer, err)
	}
	w.mu.Lock()
	w.cons = cons
	w.mu.Unlock()
	return cons, nil
}

// recover re-creates the streams, buckets and consumer when the server has
// lost them (a restart without its store, an operator's mistake), and says
// which it found missing.
func (w *Worker) recover(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	missing, err := w.missing(ctx)
	if err != nil {
		w.log.Warn("worker_check_streams_failed", zap.Error(err))
		return
	}
	if len(missing) > 0 {
		if err := w.bus.Ensure(ctx); err != nil {
			w.log.Error("worker_recreate_streams_failed", zap.Strings("missing", missing), zap.Error(err))
			return
		}
		w.stats.Recreated.Add(1)
		w.log.Warn("worker_streams_recreated", zap.Strings("missing", missing))
	}
	cons, err := w.consumer(ctx)
	if err == nil {
		_, err = cons.Info(ctx)
	}
	if err == nil || !queue.IsNotFound(err) {
		return
	}
	w.log.Warn("worker_consumer_lost", zap.Error(err))
	if _, err := w.ensureConsumer(ctx); err != nil {
		w.log.Error("worker_recreate_consumer_failed", zap.Error(err))
		return
	}
	w.stats.Recreated.Add(1)
	w.log.Warn("worker_consumer_recreated", zap.String("consumer", w.cfg.Consumer))
}

// recoverTimeout bounds one check and re-creation.
const recoverTimeout = 10 * time.Second

// busStreams are the streams the worker needs, a KV bucket being the
// stream KV_<bucket>.
var busStreams = []string{
	queue.StreamJobs, queue.StreamCallbacks, queue.StreamResults, queue.StreamDead,
	"KV_" + queue.BucketRequests, "KV_" + queue.BucketJobs, "KV_" + queue.BucketChunks,
	"KV_" + queue.BucketOutcomes, "KV_" + queue.BucketWorkers,
}

// missing returns the names of the streams and buckets the server lacks,
// in one listing request.
func (w *Worker) missing(ctx context.Context) ([]string, error) {
	have := map[string]bool{}
	names := w.bus.JS.StreamNames(ctx)
	for n := range names.Name() {
		have[n] = true
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("listing streams: %w", err)
	}
	var out []string
	for _, n := range busStreams {
		if !have[n] {
			out = append(out, strings.TrimPrefix(n, "KV_"))
		}
	}
	return out, nil
}
