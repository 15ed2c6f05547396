package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/ratelimit"
	"github.com/tsfallback/tsfallback/thingspace"
)

// Retry bounds of one chunk within one delivery.
const (
	// maxRateLimited bounds the 429s one request may earn in a delivery;
	// each pauses the whole deployment, so this is only a safety stop.
	maxRateLimited = 50
	// longPause: a job that meets a pause longer than this is handed back
	// with a delay instead of holding a slot and its message for it.
	longPause = 2 * time.Minute
	// persistBackoffCap bounds the wait between tries of a write that must
	// not be lost (the record of an accepted request).
	persistBackoffCap = 5 * time.Second
	// persistDeadline bounds those writes once ThingSpace accepted a
	// request, shutdown or not: long enough for a cluster to fail over.
	persistDeadline = time.Minute
)

// errClass is what the worker does with a failed request.
type errClass int

const (
	classTransient errClass = iota
	classRateLimited
	classPermanent
)

// classify sorts a submit error with the thingspace package's rules. An
// error that is not ThingSpace's (a bug in a fake, a wrapped network
// error) is treated as transient: retrying is the safe side. Auth failures
// are transient too: they are the deployment's problem, not the request's,
// and must not fail devices.
func classify(err error) (errClass, time.Duration) {
	if d, ok := thingspace.IsRateLimited(err); ok {
		return classRateLimited, d
	}
	if thingspace.IsPermanent(err) {
		return classPermanent, 0
	}
	return classTransient, 0
}

// faultOf turns a permanent refusal into the fault of its devices.
func faultOf(err error) *model.Fault {
	var te *thingspace.Error
	if errors.As(err, &te) {
		f := &model.Fault{Code: te.Code, Message: te.Message}
		if f.Code == "" {
			f.Code = FaultRejected
			if te.Status != 0 {
				f.Code = fmt.Sprintf("HTTP_%d", te.Status)
			}
		}
		if f.Message == "" {
			f.Message = te.Error()
		}
		return f
	}
	return &model.Fault{Code: FaultRejected, Message: err.Error()}
}

// runChunk settles chunk i of the job: skipped when the journal has it
// (known is its entry when the delivery started, nil when it had none),
// else submitted and recorded.
func (w *Worker) runChunk(ctx context.Context, d *delivery, i int, devs []model.Device, known *chunkEntry) error {
	log := d.log.With(zap.Int("chunk", i))
	for known == nil {
		// Read again just before submitting: a concurrent delivery may
		// have settled the chunk while this one waited on earlier ones.
		ce, ok, err := w.journalGet(ctx, d.job.JobID, i)
		if err != nil {
			return err
		}
		if ok {
			known = &ce
			break
		}
		rev, err := w.claim(ctx, d, i)
		if errors.Is(err, errClaimed) {
			// Another delivery of the job is submitting it: wait for its
			// journal entry (or for the claim to die with its process).
			if n := w.stats.ClaimWaits.Add(1); n%claimWaitLog == 0 {
				log.Info("worker_chunk_claim_wait", zap.Int64("looks", n))
			}
			if err := sleep(ctx, claimPoll); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		defer w.release(ctx, d, i, rev)
		// The claim's holder writes the journal before it lets go: read
		// it once more under this claim.
		ce, ok, err = w.journalGet(ctx, d.job.JobID, i)
		if err != nil {
			return err
		}
		if ok {
			known = &ce
		}
		break
	}
	if known != nil {
		// Limitation: chunks are identified by index, so every process
		// must run with the same TSFB_CHUNK_SIZE; readJournal sends a job
		// split with another size back rather than skip the wrong chunks.
		w.stats.ChunksSkip.Add(1)
		log.Debug("worker_chunk_skipped", zap.String("request_id", known.RequestID))
		if known.RequestID == "" || known.Published {
			return nil // failed for good (its devices were recorded first), or done
		}
		// The crash may have come between the journal and the event.
		return w.publishSubmitted(ctx, d, log, i, devs, *known)
	}

	id, dup, fault, err := w.submit(ctx, d, devs)
	if err != nil {
		return err
	}
	if fault != nil {
		log.Warn("worker_chunk_refused", zap.String("code", fault.Code), zap.String("message", fault.Message))
		if err := w.failDevices(ctx, d, i, devs, fault); err != nil {
			return err
		}
		w.stats.ChunksFailed.Add(1)
		_, err := w.journalPut(ctx, d.job.JobID, i, chunkEntry{Fault: fault, Devices: len(devs),
			Digest: digest(devs), At: time.Now().UTC()})
		return err
	}

	// ThingSpace has the request now: these writes are retried until
	// they succeed, since giving up here means submitting it again.
	// The record goes first: the correlator waits for it. They outlive
	// a shutdown's cancel (bounded by persistDeadline): a record lost to
	// the cancel would turn the request's callbacks into unmatched ones
	// and make the redelivery submit the chunk again.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), persistDeadline)
	defer cancel()
	rec := model.RequestRecord{RequestID: id, JobID: d.job.JobID, AccountName: d.job.AccountName,
		ReplyTo: d.job.ReplyTo, Chunk: i, Devices: devs, SubmittedAt: time.Now().UnixMilli()}
	if err := w.persist(ctx, log, func(ctx context.Context) error { return w.putRecord(ctx, rec) }); err != nil {
		return err
	}
	ce := chunkEntry{RequestID: id, Devices: len(devs), PossibleDuplicate: dup, Digest: digest(devs),
		At: time.Now().UTC()}
	err = w.persist(ctx, log, func(ctx context.Context) error {
		var err error
		ce.rev, err = w.journalPut(ctx, d.job.JobID, i, ce)
		return err
	})
	if err != nil {
		return err
	}
	if ce.rev == 0 {
		w.stats.PossibleDuplicates.Add(1)
		log.Warn("worker_chunk_submitted_twice", zap.String("request_id", id))
	}
	log.Debug("worker_chunk_submitted", zap.String("request_id", id), zap.Int("devices", len(devs)),
		zap.Bool("possible_duplicate", dup))
	// The first try cannot repeat an earlier publish; a retry may, when
	// the failed try was stored after all.
	var tried time.Time
	return w.persist(ctx, log, func(ctx context.Context) error {
		ce.created = tried
		if tried.IsZero() {
			tried = time.Now()
		}
		return w.publishSubmitted(ctx, d, log, i, devs, ce)
	})
}

// publishSubmitted publishes request.submitted for the chunk's entry ce
// once, the way publishAccepted does for job.accepted, and marks the entry
// when it is this delivery's (ce.rev is 0 for an entry another delivery
// wrote first: that one marks its own).
func (w *Worker) publishSubmitted(ctx context.Context, d *delivery, log *zap.Logger, i int,
	devs []model.Device, ce chunkEntry) error {
	ev := model.Event{Type: model.EventRequestSubmitted, JobID: d.job.JobID,
		AccountName: d.job.AccountName, RequestID: ce.RequestID, Devices: devs,
		PossibleDuplicate: ce.PossibleDuplicate}
	if err := w.publishOnce(ctx, d, ev, ce.created); err != nil {
		return err
	}
	if ce.rev == 0 {
		return nil
	}
	ce.Published = true
	if err := w.markPublished(ctx, journalKey(d.job.JobID, i), ce.rev, ce); err != nil {
		log.Warn("worker_mark_published_failed", zap.Error(err))
	}
	return nil
}

// submit sends one request, waiting on the rate limit before each try. It
// returns the requestId, or the fault of a permanent refusal, or an error
// that hands the job back (a *retryLater, or ctx's error).
func (w *Worker) submit(ctx context.Context, d *delivery, devs []model.Device) (
	id string, dup bool, fault *model.Fault, err error) {
	req := model.SetFallbackRequest{Devices: devs, AccountName: d.job.AccountName}
	attempts, limited := 0, 0
	for {
		if w.halted.Load() {
			return "", dup, nil, errHalted
		}
		// Holding a slot through a long pause keeps the message from the
		// other workers for nothing: the job is handed back for when the
		// pause ends, also when the pause starts while it waits for a
		// token. Near the last delivery the job holds on instead, so that
		// pauses alone cannot exhaust it.
		longest := longPause
		if int(d.meta.NumDelivered) >= w.cfg.MaxDeliver-2 {
			longest = 0
		}
		if err := w.lim.WaitUpTo(ctx, longest); errors.Is(err, ratelimit.ErrLongPause) {
			return "", dup, nil, &retryLater{delay: max(time.Until(w.lim.PausedUntil()), time.Second),
				err: errors.New("deployment paused by a 429")}
		} else if err != nil {
			return "", dup, nil, fmt.Errorf("waiting on the rate limit: %w", err)
		}
		id, err := w.api.SetFallbackAttribute(ctx, req)
		if err == nil {
			w.stats.Requests.Add(1)
			return id, dup, nil, nil
		}
		if ctx.Err() != nil {
			// Cut off by a shutdown, perhaps after the request was
			// sent: the next delivery's request may be a second one.
			if thingspace.MaybeExecuted(err) {
				w.stats.PossibleDuplicates.Add(1)
			}
			return "", dup, nil, ctx.Err()
		}
		if errors.Is(err, thingspace.ErrLoginStopped) {
			// The client refuses every call until it is recreated:
			// retrying would only burn this job's deliveries.
			w.halt(err)
			return "", dup, nil, errHalted
		}
		class, retryAfter := classify(err)
		switch class {
		case classPermanent:
			return "", dup, faultOf(err), nil
		case classRateLimited:
			w.stats.RateLimited.Add(1)
			limited++
			d.log.Warn("worker_rate_limited", zap.Duration("retry_after", retryAfter), zap.Error(err))
			w.lim.Pause(ctx, retryAfter)
			if limited >= maxRateLimited {
				return "", dup, nil, &retryLater{delay: w.backoff.redelivery(int(d.meta.NumDelivered)), err: err}
			}
			continue
		}
		attempts++
		w.stats.Retries.Add(1)
		if thingspace.MaybeExecuted(err) {
			// Limitation: the mark lives in this delivery; when the job
			// is handed back, the next delivery's request is not marked.
			dup = true
			w.stats.PossibleDuplicates.Add(1)
		}
		if attempts >= w.backoff.attempts {
			return "", dup, nil, &retryLater{delay: w.backoff.redelivery(int(d.meta.NumDelivered)), err: err}
		}
		wait := w.backoff.retry(attempts)
		d.log.Warn("worker_submit_retry", zap.Int("attempt", attempts), zap.Duration("wait", wait),
			zap.Bool("maybe_executed", thingspace.MaybeExecuted(err)), zap.Error(err))
		if err := sleep(ctx, wait); err != nil {
			return "", dup, nil, err
		}
	}
}

// persist runs op until it succeeds or ctx ends, for writes that must not
// be lost. A key ThingSpace made unusable is not retried.
func (w *Worker) persist(ctx context.Context, log *zap.Logger, op func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if w.backoff.persistAttempt > 0 {
			actx, cancel = context.WithTimeout(ctx, w.backoff.persistAttempt)
		}
		err := op(actx)
		cancel()
		if err == nil || errors.Is(err, jetstream.ErrInvalidKey) || ctx.Err() != nil {
			return err
		}
		// The server may have lost the bucket: have it re-created.
		w.askCheck()
		wait := jitter(expo(w.backoff.base, persistBackoffCap, attempt))
		log.Warn("worker_persist_retry", zap.Int("attempt", attempt), zap.Duration("wait", wait), zap.Error(err))
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// failDevices records device.failed for every device of the chunk.
func (w *Worker) failDevices(ctx context.Context, d *delivery, i int, devs []model.Device,
	fault *model.Fault) error {
	outs := make([]progress.Outcome, len(devs))
	for k := range devs {
		outs[k] = progress.Outcome{
			Event: model.Event{Type: model.EventDeviceFailed, JobID: d.job.JobID,
				AccountName: d.job.AccountName, Device: &devs[k], Status: model.StatusFailed, Fault: fault},
			ReplyTo: d.job.ReplyTo,
			Source:  chunkSource(d.job.JobID, i),
		}
	}
	if err := w.tr.Record(ctx, outs); err != nil {
		return fmt.Errorf("recording failed devices of chunk %d: %w", i, err)
	}
	return nil
}
