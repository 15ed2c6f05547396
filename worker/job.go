package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

// invalidAccount names the account of a rejected job whose account name is
// unusable both in the body and in the subject, so its event still has a
// subject.
const invalidAccount = "_invalid"

// Fault codes of failures decided by the worker, not ThingSpace.
const (
	FaultGaveUp   = "TSFB_GAVE_UP"
	FaultRejected = "TSFB_REQUEST_REJECTED"
)

// retryLater asks for the job to be delivered again after delay.
type retryLater struct {
	delay time.Duration
	err   error
}

func (r *retryLater) Error() string {
	return fmt.Sprintf("retrying job in %s: %v", r.delay, r.err)
}

func (r *retryLater) Unwrap() error { return r.err }

// delivery is one job being processed.
type delivery struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
	job  model.Job
	log  *zap.Logger
}

// handle processes one delivery and settles its message.
func (w *Worker) handle(ctx context.Context, msg jetstream.Msg) {
	stop := w.keepAlive(msg)
	defer stop()

	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: nothing can be settled.
		w.log.Error("worker_bad_message", zap.Error(err))
		return
	}
	// process adds job_id to d.log once it knows the id, so the messages
	// below must not add it again.
	d := &delivery{msg: msg, meta: meta,
		log: w.log.With(zap.Uint64("stream_seq", meta.Sequence.Stream),
			zap.Uint64("delivery", meta.NumDelivered))}

	err = w.process(ctx, d)
	var rl *retryLater
	switch {
	case err == nil:
		if err := msg.DoubleAck(ctx); err != nil {
			// Redelivered later; the journal makes that harmless.
			d.log.Warn("worker_ack_failed", zap.Error(err))
			return
		}
		w.stats.JobsDone.Add(1)
		d.log.Debug("worker_job_done")
	case errors.Is(err, errSettled):
	case errors.Is(err, errHalted):
		// Not the job's fault: it must not spend its deliveries, and its
		// last one must not give it up.
		w.stats.JobsHandedBack.Add(1)
		if int(meta.NumDelivered) >= w.cfg.MaxDeliver && w.requeue(d) {
			return
		}
		_ = msg.NakWithDelay(haltRedelivery)
		d.log.Warn("worker_job_handed_back", zap.Duration("delay", haltRedelivery))
	case ctx.Err() != nil:
		// Shutdown: give the job back at once for another worker.
		if int(meta.NumDelivered) >= w.cfg.MaxDeliver && w.requeue(d) {
			return
		}
		_ = msg.Nak()
		d.log.Info("worker_job_interrupted")
	case int(meta.NumDelivered) >= w.cfg.MaxDeliver:
		w.giveUp(ctx, d, err)
	case errors.As(err, &rl):
		w.stats.JobsRetried.Add(1)
		d.log.Warn("worker_job_retry_later", zap.Duration("delay", rl.delay), zap.Error(err))
		_ = msg.NakWithDelay(rl.delay)
	default:
		// Most errors here are the bus's: the server may have lost a
		// stream or bucket, which the fetch loop re-creates.
		w.askCheck()
		delay := w.backoff.redelivery(int(meta.NumDelivered))
		w.stats.JobsRetried.Add(1)
		d.log.Warn("worker_job_retry_later", zap.Duration("delay", delay), zap.Error(err))
		_ = msg.NakWithDelay(delay)
	}
}

// requeueTimeout bounds the publish of a requeued job during shutdown.
const requeueTimeout = 5 * time.Second

// requeue publishes a copy of a job interrupted by a shutdown during its
// last delivery, which a Nak would not bring back, and terminates the
// original. The copy carries the job id, so its journal still applies. It
// reports whether it did.
func (w *Worker) requeue(d *delivery) bool {
	if model.ValidateJobID(d.job.JobID) != nil || len(d.job.Devices) == 0 {
		return false
	}
	data, err := json.Marshal(d.job)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), requeueTimeout)
	defer cancel()
	// The copy's id makes a retried requeue of this message one copy.
	copyID := fmt.Sprintf("%s-requeue-%d", d.job.JobID, d.meta.Sequence.Stream)
	if _, err := w.bus.JS.Publish(ctx, d.msg.Subject(), data, jetstream.WithMsgID(copyID)); err != nil {
		d.log.Warn("worker_requeue_failed", zap.Error(err))
		return false
	}
	// The original has no delivery left: unless it is terminated it stays
	// in the work queue for good, beside its copy.
	for try := 1; ; try++ {
		err := d.msg.TermWithReason("requeued as " + copyID)
		if err == nil {
			// Term is not answered; a flush makes sure the server has it
			// before this process, which is stopping, goes away.
			err = w.bus.NC.FlushTimeout(requeueTimeout)
		}
		if err == nil {
			break
		}
		if try == 3 || ctx.Err() != nil {
			d.log.Error("worker_term_failed", zap.Error(err))
			break
		}
		_ = sleep(ctx, time.Duration(try)*200*time.Millisecond)
	}
	d.log.Info("worker_job_requeued")
	return true
}

// errSettled: process already acknowledged or terminated the message.
var errSettled = errors.New("worker: message settled")

// keepAlive sends in-progress acks every third of AckWait until stopped,
// so that a job waiting on the rate limit or on ThingSpace is not
// delivered to a second worker.
func (w *Worker) keepAlive(msg jetstream.Msg) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(w.cfg.AckWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := msg.InProgress(); err != nil {
					w.log.Debug("worker_in_progress_failed", zap.Error(err))
				}
			}
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// process validates the job, submits every chunk not yet settled and
// returns nil when the message may be acknowledged.
func (w *Worker) process(ctx context.Context, d *delivery) error {
	job, err := model.DecodeJob(d.msg.Data(), w.cfg.MaxJobDevices)
	d.job = job
	var problems []model.Problem
	var inv *model.InvalidJobError
	if errors.As(err, &inv) {
		problems = inv.Problems
	} else if err != nil {
		problems = []model.Problem{{Device: -1, Field: "body", Reason: err.Error()}}
	}
	subjAccount := strings.TrimPrefix(d.msg.Subject(), queue.JobsPrefix+".")
	if model.ValidateAccountName(job.AccountName) == nil && subjAccount != job.AccountName {
		problems = append(problems, model.Problem{Device: -1, Field: "accountName",
			Reason: fmt.Sprintf("job for account %s published on subject %s", job.AccountName, d.msg.Subject())})
	}
	if d.job.JobID == "" || hasProblem(problems, "jobId") {
		// The same message gets the same id on every delivery; the
		// timestamp keeps ids apart if the stream is ever re-created
		// and its sequence starts again.
		d.job.JobID = fmt.Sprintf("seq-%d-%x", d.meta.Sequence.Stream, d.meta.Timestamp.UnixNano())
	}
	d.log = d.log.With(zap.String("job_id", d.job.JobID))
	if len(problems) > 0 {
		return w.reject(ctx, d, subjAccount, problems)
	}

	parts := chunks(d.job.Devices, w.cfg.ChunkSize)
	journal, err := w.readJournal(ctx, d, parts)
	if err == nil {
		err = w.recordAcceptance(ctx, d, journal)
	}
	if errors.Is(err, errReused) {
		return w.reject(ctx, d, subjAccount, []model.Problem{reusedProblem(d.job.JobID)})
	}
	if err != nil {
		return err
	}
	if err := w.tr.StartJob(ctx, d.job); err != nil {
		return err
	}
	if err := w.publishAccepted(ctx, d, journal.accept); err != nil {
		return err
	}
	d.log.Debug("worker_job_accepted", zap.Int("devices", len(d.job.Devices)))

	w.est.observe(len(parts))
	for i, devs := range parts {
		if err := w.runChunk(ctx, d, i, devs, journal.chunks[i]); err != nil {
			return err
		}
	}
	return nil
}

// errReused: the job's id was used before for other devices.
var errReused = errors.New("worker: job id used before for other devices")

func reusedProblem(jobID string) model.Problem {
	return model.Problem{Device: -1, Field: "jobId",
		Reason: fmt.Sprintf("job id %s was used before for other devices; use a new job id", jobID)}
}

// readJournal returns the journal entry of every chunk (nil when it has
// none) and the job's acceptance record, after checking that they were
// written for these devices: a job id reused for other devices would
// otherwise have its chunks skipped by index, and the new devices never
// submitted. It returns errReused before anything of the job is submitted
// or published.
func (w *Worker) readJournal(ctx context.Context, d *delivery, parts [][]model.Device) (*jobJournal, error) {
	jj := &jobJournal{chunks: make([]*chunkEntry, len(parts))}
	ae, ok, err := w.acceptGet(ctx, d.job.JobID)
	if err != nil {
		return nil, err
	}
	if ok {
		jj.accept = &ae
	}
	jobDigest := digest(d.job.Devices)
	if ok && ae.Digest != jobDigest {
		return nil, errReused
	}
	for i, devs := range parts {
		ce, ok, err := w.journalGet(ctx, d.job.JobID, i)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if ce.Digest != "" && ce.Digest != digest(devs) {
			if jj.accept != nil {
				// Same devices, other chunks: a process with another
				// TSFB_CHUNK_SIZE split the job before. Skipping or
				// submitting by index here would send the wrong devices;
				// the job goes back, for a process with that size.
				return nil, fmt.Errorf("chunk %d of job %s was split with another TSFB_CHUNK_SIZE than %d",
					i, d.job.JobID, w.cfg.ChunkSize)
			}
			return nil, errReused
		}
		jj.chunks[i] = &ce
	}
	return jj, nil
}

// jobJournal is what the chunks bucket knew of a job when its delivery
// started.
type jobJournal struct {
	accept *acceptEntry // nil before the job's first acceptance
	chunks []*chunkEntry
}

func (jj *jobJournal) anyChunk() bool {
	for _, ce := range jj.chunks {
		if ce != nil {
			return true
		}
	}
	return false
}

// recordAcceptance creates the job's acceptance record when it has none
// yet, before anything of the job is submitted or published, so that a
// later job with this id and other devices is refused (errReused).
func (w *Worker) recordAcceptance(ctx context.Context, d *delivery, jj *jobJournal) error {
	if jj.accept != nil {
		return nil
	}
	stored, err := w.acceptCreate(ctx, d.job.JobID, acceptEntry{Digest: digest(d.job.Devices),
		Devices: len(d.job.Devices), At: time.Now().UTC(),
		// A journal without an acceptance record was written before the
		// record existed, by a worker that published job.accepted before
		// its first chunk.
		Published: jj.anyChunk()})
	if err != nil {
		return err
	}
	if stored.Digest != digest(d.job.Devices) {
		// A job with the same id and other devices got there first.
		return errReused
	}
	jj.accept = &stored
	w.stats.JobsAccepted.Add(1)
	return nil
}

// publishAccepted publishes job.accepted once per job, however many times
// or however late the job is delivered.
//
// The acceptance record is created first (recordAcceptance) and marked
// Published once the event is stored. A delivery that finds it marked does
// not publish. One that finds it unmarked (the previous one crashed, or
// failed, between the two) may have published already: it publishes again
// only while the stream's duplicate window still drops the repeat, or else
// when the event is not in the stream (Tracker.MayPublish). Both are
// needed: Nats-Msg-Id alone lets a redelivery minutes later publish twice,
// and the mark alone cannot tell a crash before the publish from one after.
func (w *Worker) publishAccepted(ctx context.Context, d *delivery, ae *acceptEntry) error {
	if ae.Published {
		return nil
	}
	ev := model.Event{Type: model.EventJobAccepted, JobID: d.job.JobID, AccountName: d.job.AccountName}
	if err := w.publishOnce(ctx, d, ev, ae.created); err != nil {
		return err
	}
	marked := *ae
	marked.Published = true
	if err := w.markPublished(ctx, acceptKey(d.job.JobID), ae.rev, marked); err != nil {
		d.log.Warn("worker_mark_published_failed", zap.Error(err))
	}
	return nil
}

// publishOnce publishes e unless the stream already has it from an
// earlier try that began no earlier than attempted (see publishAccepted).
// A zero attempted means there was no earlier try: e is published without
// a look, so that the usual path costs no more than the publish.
func (w *Worker) publishOnce(ctx context.Context, d *delivery, e model.Event, attempted time.Time) error {
	if attempted.IsZero() {
		return w.bus.PublishEvent(ctx, e, d.job.ReplyTo)
	}
	ok, err := w.tr.MayPublish(ctx, e, attempted)
	if err != nil {
		return err
	}
	if !ok {
		w.stats.AlreadyPublished.Add(1)
		d.log.Debug("worker_event_already_published", zap.String("type", e.Type),
			zap.String("request_id", e.RequestID))
		return nil
	}
	return w.bus.PublishEvent(ctx, e, d.job.ReplyTo)
}

func hasProblem(ps []model.Problem, field string) bool {
	for _, p := range ps {
		if p.Device < 0 && p.Field == field {
			return true
		}
	}
	return false
}

// chunks splits devices into runs of at most size.
func chunks(devices []model.Device, size int) [][]model.Device {
	var out [][]model.Device
	for start := 0; start < len(devices); start += size {
		out = append(out, devices[start:min(start+size, len(devices))])
	}
	return out
}

// reject publishes job.rejected naming every problem, keeps a copy of the
// message in the dead-letter stream and terminates it: an invalid job is
// never retried.
func (w *Worker) reject(ctx context.Context, d *delivery, subjAccount string, problems []model.Problem) error {
	account := d.job.AccountName
	if model.ValidateAccountName(account) != nil {
		account = subjAccount
		if model.ValidateAccountName(account) != nil {
			account = invalidAccount
		}
	}
	replyTo := d.job.ReplyTo
	if hasProblem(problems, "replyTo") {
		replyTo = ""
	}
	ev := model.Event{Type: model.EventJobRejected, JobID: d.job.JobID, AccountName: account,
		Problems: problems}
	if err := w.bus.PublishEvent(ctx, ev, replyTo); err != nil {
		return err
	}
	reason := (&model.InvalidJobError{Problems: problems}).Error()
	if err := w.bus.DeadLetter(ctx, queue.DeadJobs, reason, d.msg.Data(), d.msg.Subject()); err != nil {
		return err
	}
	if err := d.msg.Term(); err != nil {
		d.log.Warn("worker_term_failed", zap.Error(err))
	}
	w.stats.JobsRejected.Add(1)
	d.log.Warn("worker_job_rejected", zap.Int("problems", len(problems)), zap.String("reason", reason))
	return errSettled
}

// giveUp ends a job whose last delivery failed: every device of a chunk
// that has no requestId gets device.failed, the job gets job.failed, and
// the message goes to the dead-letter stream.
func (w *Worker) giveUp(ctx context.Context, d *delivery, cause error) {
	w.stats.JobsFailed.Add(1)
	d.log.Error("worker_job_gave_up", zap.Error(cause)) // "delivery" says which
	fault := &model.Fault{Code: FaultGaveUp,
		Message: fmt.Sprintf("gave up after %d deliveries: %v", d.meta.NumDelivered, cause)}
	err := w.failUnsettled(ctx, d, fault)
	if err == nil {
		err = w.bus.PublishEvent(ctx, model.Event{Type: model.EventJobFailed, JobID: d.job.JobID,
			AccountName: d.job.AccountName, Fault: fault}, d.job.ReplyTo)
	}
	if err == nil {
		err = w.bus.DeadLetter(ctx, queue.DeadJobs, fault.Message, d.msg.Data(), d.msg.Subject())
	}
	if err != nil {
		// Limitation: the message has used its last delivery, so nothing
		// retries this; the job stays incomplete until an operator
		// republishes it from the stream.
		d.log.Error("worker_give_up_failed", zap.Error(err))
	}
	if err := d.msg.Term(); err != nil {
		d.log.Warn("worker_term_failed", zap.Error(err))
	}
}

// failUnsettled records device.failed for every device of every chunk the
// journal does not know.
func (w *Worker) failUnsettled(ctx context.Context, d *delivery, fault *model.Fault) error {
	if model.ValidateJobID(d.job.JobID) != nil || model.ValidateAccountName(d.job.AccountName) != nil {
		return nil
	}
	for i, devs := range chunks(d.job.Devices, w.cfg.ChunkSize) {
		if _, ok, err := w.journalGet(ctx, d.job.JobID, i); err != nil {
			return err
		} else if ok {
			continue
		}
		if err := w.failDevices(ctx, d, i, devs, fault); err != nil {
			return err
		}
	}
	return nil
}

func chunkSource(jobID string, chunk int) string {
	return "worker:" + jobID + "." + strconv.Itoa(chunk)
}
