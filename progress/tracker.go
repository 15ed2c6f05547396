package progress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

// Parallelism bounds the KV and publish calls of one batch in flight at
// once: enough to hide the round trips, few enough not to flood NATS.
const Parallelism = 64

// maxConflicts bounds the optimistic-concurrency retries of one job update.
// Each retry means another process just updated the job, so the loop always
// makes progress; the bound only stops a bug from spinning for ever.
const maxConflicts = 200

// Tracker records final outcomes and job progress.
type Tracker struct {
	bus *queue.Bus
	log *zap.Logger
	now func() time.Time

	// window is FALLBACK_RESULTS' duplicate window, read once it can be.
	windowMu sync.Mutex
	window   time.Duration

	stats Stats
}

// Stats are counters since the tracker started, for metrics.
type Stats struct {
	Recorded  atomic.Int64 // outcomes stored for the first time
	Redone    atomic.Int64 // outcomes of ours found stored: republished
	Resends   atomic.Int64 // outcomes of another source found stored: skipped
	Invalid   atomic.Int64 // outcomes refused as invalid
	Completed atomic.Int64 // job.completed events published
	Conflicts atomic.Int64 // job updates retried after a concurrent update
	// AlreadyPublished counts redone outcomes older than the duplicate
	// window whose event was found in the stream, so not sent again.
	AlreadyPublished atomic.Int64
}

// New returns a tracker that works on bus.
func New(bus *queue.Bus, log *zap.Logger) (*Tracker, error) {
	if bus == nil || bus.Jobs == nil || bus.Outcomes == nil {
		return nil, errors.New("progress: bus with jobs and outcomes buckets required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Tracker{bus: bus, log: log.Named("progress"), now: func() time.Time { return time.Now().UTC() }}, nil
}

// Stats returns the tracker's counters.
func (t *Tracker) Stats() *Stats { return &t.stats }

// StartJob creates the job's progress record with its number of distinct
// devices. It is idempotent; on a job already known from early outcomes it
// fills in the device count (and completes the job if they are all in).
func (t *Tracker) StartJob(ctx context.Context, job model.Job) error {
	if err := model.ValidateJobID(job.JobID); err != nil {
		return fmt.Errorf("starting job: %w", err)
	}
	distinct := map[string]bool{}
	for i := range job.Devices {
		distinct[deviceKey(&job.Devices[i])] = true
	}
	rec, err := t.update(ctx, job.JobID, func(r *jobRecord, now time.Time) bool {
		changed := false
		if r.AccountName == "" {
			r.AccountName, changed = job.AccountName, true
		}
		if r.ReplyTo == "" && job.ReplyTo != "" {
			r.ReplyTo, changed = job.ReplyTo, true
		}
		if r.Counts.Devices == 0 && len(distinct) > 0 {
			r.Counts.Devices, changed = len(distinct), true
		}
		return r.settle(now) || changed
	})
	if err != nil {
		return fmt.Errorf("starting job %s: %w", job.JobID, err)
	}
	return t.finish(ctx, rec)
}

// Get returns the job's progress, or an error wrapping ErrJobNotFound.
func (t *Tracker) Get(ctx context.Context, jobID string) (JobState, error) {
	if model.ValidateJobID(jobID) != nil {
		return JobState{}, fmt.Errorf("%w: %q", ErrJobNotFound, jobID)
	}
	e, err := t.bus.Jobs.Get(ctx, jobID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return JobState{}, fmt.Errorf("%w: %s", ErrJobNotFound, jobID)
	}
	if err != nil {
		return JobState{}, fmt.Errorf("reading job %s: %w", jobID, err)
	}
	r, err := decodeJob(e.Value())
	if err != nil {
		return JobState{}, err
	}
	return r.JobState, nil
}

// tally is what one batch brings to one job.
type tally struct {
	account string
	replyTo string
	devices map[string]string // device key -> final event type
}

// Record stores, publishes and counts a batch of final outcomes. It is
// idempotent: after an error the caller redelivers the whole batch (or any
// part of it, in any grouping) and nothing is published or counted twice.
// Invalid outcomes are logged, counted and skipped, never retried.
//
// The order of the steps is what makes a crash anywhere harmless:
//
//  1. Create the outcome record. The record, not the stream's duplicate
//     window, is what remembers ThingSpace's resends, which come minutes
//     apart. A record that exists with our Source is our own unfinished
//     work (we crashed after the create): go on with the stored outcome. With
//     another Source it is a resend: do not publish it again.
//  2. Publish the event with its message id. Repeating step 2 after a crash
//     is deduplicated by the stream.
//  3. Apply the counts, one update per job per batch. The job record holds
//     the set of devices already counted, so a device is counted once even
//     when its outcome is processed again after a crash between step 1 and
//     step 3, and whichever outcome record exists for it is what is counted.
//     Counts therefore cannot be lost: a crash before step 3 leaves the
//     callback unacknowledged, and its redelivery finds the record (step 1)
//     and counts it now.
//  4. The update that counts the last device also sets Completed; then
//     job.completed is published with its message id and CompletedPublished
//     is set. A crash between those two republishes on redelivery, which the
//     stream deduplicates.
//
// A redelivery that comes after the stream's duplicate window (all
// correlators down for minutes between step 1 and the ack) cannot rely on
// the stream to drop a second publish: it looks for the event in the job's
// events first and publishes only when it is not there.
func (t *Tracker) Record(ctx context.Context, outs []Outcome) error {
	valid := make([]Outcome, 0, len(outs))
	for _, o := range outs {
		if err := validate(&o); err != nil {
			t.stats.Invalid.Add(1)
			t.log.Warn("outcome_invalid", zap.String("job_id", o.Event.JobID),
				zap.String("source", o.Source), zap.Error(err))
			continue
		}
		if o.Event.At.IsZero() {
			o.Event.At = t.now()
		}
		valid = append(valid, o)
	}
	if len(valid) == 0 {
		return nil
	}

	// Step 1 for the whole batch, then step 2 for the whole batch: every
	// outcome's create is acked before its event is sent.
	recs, publish, errs := t.storeAll(ctx, valid)
	var (
		events  []model.Event
		replyTo []string
		which   []int
	)
	for i := range valid {
		if errs[i] == nil && publish[i] {
			events = append(events, recs[i].Event)
			replyTo = append(replyTo, recs[i].ReplyTo)
			which = append(which, i)
		}
	}
	for k, err := range t.bus.PublishEvents(ctx, events, replyTo) {
		if err != nil {
			errs[which[k]] = err
		}
	}

	// Counts of the outcomes that were stored and published are applied
	// even when others failed, so the redelivery has less to do.
	jobs := map[string]*tally{}
	for i := range valid {
		if errs[i] != nil {
			continue
		}
		e := &recs[i].Event
		tl := jobs[e.JobID]
		if tl == nil {
			tl = &tally{account: e.AccountName, replyTo: recs[i].ReplyTo, devices: map[string]string{}}
			jobs[e.JobID] = tl
		}
		if _, ok := tl.devices[deviceKey(e.Device)]; !ok {
			tl.devices[deviceKey(e.Device)] = e.Type
		}
	}
	var (
		mu sync.Mutex
		g  errgroup.Group
	)
	g.SetLimit(Parallelism)
	for jobID, tl := range jobs {
		g.Go(func() error {
			if err := t.apply(ctx, jobID, tl); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// storeAll does step 1 for every outcome. The creates go out as
// asynchronous publishes to the bucket's subjects with an expected last
// subject sequence of 0, which is what KeyValue.Create sends, and their acks
// are awaited together: one round trip for the batch rather than one per
// outcome. The rare outcome whose key exists takes the slow path of
// storeExisting. recs[i] is the record that counts for outs[i]; publish[i]
// says its event must be sent.
func (t *Tracker) storeAll(ctx context.Context, outs []Outcome) (recs []outcomeRecord, publish []bool, errs []error) {
	recs = make([]outcomeRecord, len(outs))
	publish = make([]bool, len(outs))
	errs = make([]error, len(outs))
	futs := make([]jetstream.PubAckFuture, len(outs))
	prefix := "$KV." + t.bus.Outcomes.Bucket() + "."
	for i := range outs {
		o := &outs[i]
		recs[i] = outcomeRecord{Source: o.Source, ReplyTo: o.ReplyTo, Event: o.Event}
		data, err := json.Marshal(recs[i])
		if err != nil {
			errs[i] = fmt.Errorf("encoding outcome: %w", err)
			continue
		}
		msg := nats.NewMsg(prefix + outcomeKey(&o.Event))
		msg.Data = data
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		if futs[i], err = t.bus.JS.PublishMsgAsync(msg); err != nil {
			errs[i] = fmt.Errorf("storing outcome %s: %w", outcomeKey(&o.Event), err)
		}
	}
	var slow []int
	for i, f := range futs {
		if f == nil {
			continue
		}
		err := queue.AwaitAck(ctx, f)
		switch {
		case err == nil:
			t.stats.Recorded.Add(1)
			publish[i] = true
		case wrongLastSeq(err):
			slow = append(slow, i)
		default:
			errs[i] = fmt.Errorf("storing outcome %s: %w", outcomeKey(&outs[i].Event), err)
		}
	}
	var g errgroup.Group
	g.SetLimit(Parallelism)
	for _, i := range slow {
		g.Go(func() error {
			recs[i], publish[i], errs[i] = t.storeExisting(ctx, outs[i], recs[i])
			return nil
		})
	}
	_ = g.Wait()
	return recs, publish, errs
}

// wrongLastSeq reports whether err is JetStream's answer to a create of a
// key that has a value: code 10071, or 10164 from a replicated stream.
func wrongLastSeq(err error) bool {
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// storeExisting is step 1 for an outcome whose create found the key taken.
// It goes through KeyValue.Create once more, which also handles a key whose
// last value is a delete marker, and returns the record that counts for the
// device (the stored one when it exists) and whether its event must be
// published.
func (t *Tracker) storeExisting(ctx context.Context, o Outcome, rec outcomeRecord) (outcomeRecord, bool, error) {
	data, err := json.Marshal(rec)
	if err != nil {
		return rec, false, fmt.Errorf("encoding outcome: %w", err)
	}
	key := outcomeKey(&o.Event)
	_, err = t.bus.Outcomes.Create(ctx, key, data)
	switch {
	case err == nil:
		t.stats.Recorded.Add(1)
		return rec, true, nil
	case !errors.Is(err, jetstream.ErrKeyExists):
		return rec, false, fmt.Errorf("storing outcome %s: %w", key, err)
	}
	entry, err := t.bus.Outcomes.Get(ctx, key)
	if err != nil {
		return rec, false, fmt.Errorf("reading outcome %s: %w", key, err)
	}
	var stored outcomeRecord
	if uerr := json.Unmarshal(entry.Value(), &stored); uerr != nil || stored.Event.Device == nil {
		// A record we cannot read still says the device is done; count
		// this outcome in its place rather than never finishing the job.
		t.log.Warn("outcome_record_unreadable", zap.String("key", key))
		return rec, false, nil
	}
	if stored.Source != o.Source {
		t.stats.Resends.Add(1)
		t.log.Debug("outcome_resend_skipped", zap.String("key", key),
			zap.String("source", o.Source), zap.String("stored_source", stored.Source))
		return stored, false, nil
	}
	t.stats.Redone.Add(1)
	if t.mustLookBeforeRepublish(ctx, entry.Created()) {
		found, err := t.published(ctx, &stored.Event, entry.Created())
		if err != nil {
			// The look is a courtesy: while a cluster fails over it can
			// fail for a minute or more, and holding the callback that
			// long would stall its job. Publishing risks only a repeat
			// with the same Nats-Msg-Id, which consumers can drop.
			t.log.Warn("republish_check_failed", zap.String("key", key), zap.Error(err))
			return stored, true, nil
		}
		if found {
			// Limitation: a crash between the stream publish and the
			// replyTo publish leaves replyTo without this event; it
			// is a core NATS subject, at most once by nature.
			t.stats.AlreadyPublished.Add(1)
			return stored, false, nil
		}
	}
	return stored, true, nil
}

// apply does steps 3 and 4 for one job.
func (t *Tracker) apply(ctx context.Context, jobID string, tl *tally) error {
	rec, err := t.update(ctx, jobID, func(r *jobRecord, now time.Time) bool {
		changed := false
		if r.AccountName == "" {
			r.AccountName, changed = tl.account, true
		}
		if r.ReplyTo == "" && tl.replyTo != "" {
			r.ReplyTo, changed = tl.replyTo, true
		}
		for dev, typ := range tl.devices {
			if r.count(dev, typ) {
				changed = true
			}
		}
		return r.settle(now) || changed
	})
	if err != nil {
		return fmt.Errorf("counting outcomes of job %s: %w", jobID, err)
	}
	return t.finish(ctx, rec)
}

// finish publishes job.completed for a completed job that has not had it
// yet, then remembers that it did.
func (t *Tracker) finish(ctx context.Context, rec *jobRecord) error {
	if !rec.Completed || rec.CompletedPublished {
		return nil
	}
	counts := rec.Counts
	e := model.Event{
		Type:        model.EventJobCompleted,
		JobID:       rec.JobID,
		AccountName: rec.AccountName,
		At:          rec.CompletedAt,
		Counts:      &counts,
	}
	if err := t.bus.PublishEvent(ctx, e, rec.ReplyTo); err != nil {
		return err
	}
	t.stats.Completed.Add(1)
	t.log.Info("job_completed", zap.String("job_id", rec.JobID),
		zap.Int("devices", counts.Devices), zap.Int("succeeded", counts.Succeeded),
		zap.Int("failed", counts.Failed), zap.Int("timed_out", counts.TimedOut))
	_, err := t.update(ctx, rec.JobID, func(r *jobRecord, _ time.Time) bool {
		if r.CompletedPublished {
			return false
		}
		r.CompletedPublished = true
		return true
	})
	if err != nil {
		return fmt.Errorf("marking job %s completed: %w", rec.JobID, err)
	}
	return nil
}

// update reads the job record (a new one when absent), lets fn change it and
// writes it back under optimistic concurrency, retrying on a concurrent
// update. fn reports whether it changed anything; when it did not, nothing
// is written. It returns the record as it now stands.
func (t *Tracker) update(ctx context.Context, jobID string,
	fn func(r *jobRecord, now time.Time) bool) (*jobRecord, error) {
	for attempt := 0; ; attempt++ {
		now := t.now()
		var (
			r   *jobRecord
			rev uint64
		)
		e, err := t.bus.Jobs.Get(ctx, jobID)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			r = &jobRecord{JobState: JobState{JobID: jobID, StartedAt: now}, counted: map[uint64]bool{}}
		case err != nil:
			return nil, fmt.Errorf("reading job record: %w", err)
		default:
			if r, err = decodeJob(e.Value()); err != nil {
				return nil, err
			}
			rev = e.Revision()
		}
		if !fn(r, now) {
			return r, nil
		}
		r.UpdatedAt = now
		data, err := r.encode()
		if err != nil {
			return nil, fmt.Errorf("encoding job record: %w", err)
		}
		if rev == 0 {
			_, err = t.bus.Jobs.Create(ctx, jobID, data)
		} else {
			_, err = t.bus.Jobs.Update(ctx, jobID, data, rev)
		}
		if err == nil {
			return r, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, fmt.Errorf("writing job record: %w", err)
		}
		t.stats.Conflicts.Add(1)
		if attempt >= maxConflicts {
			return nil, fmt.Errorf("writing job record: %d concurrent updates in a row: %w", attempt, err)
		}
		// A short random pause spreads processes that collided.
		pause := time.Duration(rand.Int64N(int64(time.Millisecond) * int64(min(attempt+1, 10))))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
}
