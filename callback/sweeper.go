package callback

import (
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
)

// RequestStatus is what a StatusChecker knows of a request: its status and
// the status of some of its devices.
type RequestStatus struct {
	Status  string
	Devices []DeviceStatus
}

// DeviceStatus is the status of the device named by IDs.
type DeviceStatus struct {
	IDs    []model.DeviceID
	Status string
}

// StatusChecker asks ThingSpace for a request's status before the sweeper
// times its devices out. The thingspace client fits it through a small
// adapter (its RequestStatus type has the same content).
type StatusChecker interface {
	RequestStatus(ctx context.Context, account, requestID string) (RequestStatus, error)
}

// statusCheckTimeout bounds one best-effort status check.
const statusCheckTimeout = 10 * time.Second

// scanConsumerIdle is how long the server keeps a sweep's consumer after
// its last use.
const scanConsumerIdle = 10 * time.Second

// scanBatch is how many request records one fetch of a sweep reads.
const scanBatch = 256

// errBadRecord marks a request record that cannot be decoded, which no
// retry will fix.
var errBadRecord = errors.New("callback: undecodable request record")

// kvOperationHeader marks a KV delete or purge in the bucket's stream.
const kvOperationHeader = "KV-Operation"

// Sweeper gives devices that had no final callback within Config.Timeout a
// device.timed_out outcome.
//
// It does not scan the request bucket on every sweep. The bucket is a
// stream in which every record is a message in the order it was written,
// so the sweeper keeps a cursor into that stream: each sweep reads only the
// records written since the last one that are now older than Timeout, and
// the few it has to look at again later (ThingSpace still working, a
// record stamped ahead of the stream, a failed check) wait in a small
// queue ordered by due time. Per sweep the work is the requests that fell
// due, not the requests that exist.
//
// Limitation: the cursor lives in memory, so a sweeper that starts reads
// every record of the bucket once (72 hours' worth) before it is caught
// up; the outcome checks of that first pass stop early for completed jobs.
type Sweeper struct {
	cfg     Config
	bus     *queue.Bus
	tr      *progress.Tracker
	checker StatusChecker
	log     *zap.Logger
	now     func() time.Time

	mu       sync.Mutex // one sweep at a time
	cursor   uint64     // last stream sequence of the bucket read
	deferred dueQueue
}

// NewSweeper checks cfg and returns a sweeper. checker may be nil: then
// devices are timed out without asking ThingSpace.
func NewSweeper(cfg Config, bus *queue.Bus, tr *progress.Tracker, checker StatusChecker,
	log *zap.Logger) (*Sweeper, error) {
	cfg = cfg.Defaulted()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bus == nil || tr == nil {
		return nil, errors.New("callback: sweeper needs a bus and a progress tracker")
	}
	if log == nil {
		log = zap.NewNop()
	}
	registerTracker(tr)
	return &Sweeper{cfg: cfg, bus: bus, tr: tr, checker: checker, log: log.Named("sweeper"), now: time.Now}, nil
}

// Run sweeps every SweepInterval until ctx is done. Several sweepers may run
// at once: outcomes are recorded once whoever records them.
func (s *Sweeper) Run(ctx context.Context) error {
	s.log.Info("sweeper_started", zap.Duration("timeout", s.cfg.Timeout))
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep_failed", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			s.log.Info("sweeper_stopped")
			return nil
		case <-t.C:
		}
	}
}

// Sweep times out the overdue devices of the requests that fell due since
// the last sweep, and of those it put off before.
func (s *Sweeper) Sweep(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	counters.sweeps.Add(1)
	now := s.now()
	var errs []error

	// Put-off requests first: they are the oldest.
	for _, id := range s.deferred.popDue(now) {
		if err := s.sweepRequest(ctx, id, nil, time.Time{}); err != nil {
			errs = append(errs, err)
		}
	}
	if err := s.scan(ctx, now); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// scan reads the bucket's stream from the cursor up to the first record
// that is not yet due, and sweeps each record it passes.
func (s *Sweeper) scan(ctx context.Context, now time.Time) error {
	stream := "KV_" + queue.BucketRequests
	cc := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$KV." + queue.BucketRequests + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		// One consumer per sweep: let the server drop it soon after.
		InactiveThreshold: scanConsumerIdle,
	}
	if s.cursor > 0 {
		cc.DeliverPolicy, cc.OptStartSeq = jetstream.DeliverByStartSequencePolicy, s.cursor+1
	}
	cons, err := s.bus.JS.OrderedConsumer(ctx, stream, cc)
	if err != nil {
		return fmt.Errorf("reading request records: %w", err)
	}
	cutoff := now.Add(-s.cfg.Timeout)
	var errs []error
	for ctx.Err() == nil {
		batch, err := cons.FetchNoWait(scanBatch)
		if err != nil {
			return fmt.Errorf("reading request records: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return errors.Join(append(errs, fmt.Errorf("reading request record metadata: %w", err))...)
			}
			// The stream's own stamp orders the records; a record whose
			// submittedAt disagrees is put off by sweepRequest.
			if md.Timestamp.After(cutoff) {
				return errors.Join(errs...)
			}
			s.cursor = md.Sequence.Stream
			if m.Headers().Get(kvOperationHeader) != "" {
				continue // a delete or purge marker
			}
			id := strings.TrimPrefix(m.Subject(), "$KV."+queue.BucketRequests+".")
			if err := s.sweepRequest(ctx, id, m.Data(), md.Timestamp); err != nil {
				errs = append(errs, err)
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			errs = append(errs, fmt.Errorf("reading request records: %w", err))
			break
		}
		if n == 0 {
			break
		}
	}
	return errors.Join(errs...)
}

// sweepRequest checks one request: from data when the scan has it, else
// from the bucket. Whatever cannot be settled now is put off.
func (s *Sweeper) sweepRequest(ctx context.Context, requestID string, data []byte, created time.Time) error {
	next, err := s.settle(ctx, requestID, data, created)
	if err != nil && !errors.Is(err, errBadRecord) {
		// Try again at the next sweep rather than losing the request.
		next = s.now().Add(s.cfg.SweepInterval)
	}
	if !next.IsZero() {
		s.deferred.push(next, requestID)
	}
	return err
}

// settle times out the request's overdue devices. It returns when to look
// again, zero when the request needs nothing more.
func (s *Sweeper) settle(ctx context.Context, requestID string, data []byte, created time.Time) (time.Time, error) {
	counters.examined.Add(1)
	if data == nil {
		entry, err := s.bus.Requests.Get(ctx, requestID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return time.Time{}, nil
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("reading request %s: %w", requestID, err)
		}
		data, created = entry.Value(), entry.Created()
	}
	var rec model.RequestRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		// Not retried: the record will not change by itself.
		return time.Time{}, fmt.Errorf("%w %s: %w", errBadRecord, requestID, err)
	}
	if rec.RequestID == "" {
		rec.RequestID = requestID
	}
	submitted := submittedAt(rec.SubmittedAt)
	if submitted.IsZero() {
		submitted = created
	}
	age := s.now().Sub(submitted)
	if age < s.cfg.Timeout {
		return submitted.Add(s.cfg.Timeout), nil
	}
	if st, err := s.tr.Get(ctx, rec.JobID); err == nil && st.Completed {
		return time.Time{}, nil
	}

	asks := make([]model.Event, len(rec.Devices))
	for i := range rec.Devices {
		asks[i] = model.Event{JobID: rec.JobID, RequestID: requestID, Device: &rec.Devices[i]}
	}
	done, err := s.tr.HasOutcomes(ctx, asks)
	if err != nil {
		return time.Time{}, err
	}
	var pending []model.Device
	for i, d := range rec.Devices {
		if !done[i] {
			pending = append(pending, d)
		}
	}
	if len(pending) == 0 {
		return time.Time{}, nil
	}

	statuses := s.check(ctx, &rec)
	var (
		outs  []progress.Outcome
		again time.Time
	)
	for i := range pending {
		d := pending[i]
		e := model.Event{Type: model.EventDeviceTimedOut, JobID: rec.JobID, AccountName: rec.AccountName,
			RequestID: requestID, Device: &d,
			Fault: &model.Fault{Code: "TIMEOUT", Message: fmt.Sprintf("no final callback within %s", s.cfg.Timeout)}}
		switch status := statusOf(statuses, d); {
		case status == "SUCCESS" || status == "COMPLETED":
			e.Type, e.Status, e.Fault = model.EventDeviceSucceeded, model.StatusSuccess, nil
		case status == "FAILED" || status == "FAILURE":
			e.Type, e.Status = model.EventDeviceFailed, model.StatusFailed
			e.Fault = &model.Fault{Code: "FAILED", Message: "request status reports a failure"}
		case status != "" && age < 2*s.cfg.Timeout:
			// ThingSpace still works on it: give it one more period.
			again = submitted.Add(2 * s.cfg.Timeout)
			continue
		}
		outs = append(outs, progress.Outcome{Event: e, ReplyTo: rec.ReplyTo, Source: progress.SourceSweeper})
	}
	if len(outs) == 0 {
		return again, nil
	}
	if err := s.tr.Record(ctx, outs); err != nil {
		return time.Time{}, fmt.Errorf("recording time-outs of request %s: %w", requestID, err)
	}
	counters.timedOut.Add(int64(len(outs)))
	s.log.Info("devices_timed_out", zap.String("request_id", requestID),
		zap.String("job_id", rec.JobID), zap.Int("devices", len(outs)))
	return again, nil
}

// check asks the status checker, best effort: an error means no answer.
func (s *Sweeper) check(ctx context.Context, rec *model.RequestRecord) *RequestStatus {
	if s.checker == nil {
		return nil
	}
	counters.statusChecked.Add(1)
	ctx, cancel := context.WithTimeout(ctx, statusCheckTimeout)
	defer cancel()
	st, err := s.checker.RequestStatus(ctx, rec.AccountName, rec.RequestID)
	if err != nil {
		s.log.Debug("request_status_failed", zap.String("request_id", rec.RequestID), zap.Error(err))
		return nil
	}
	return &st
}

// statusOf is the upper-cased status the checker gives for the device: its
// own when listed, else the request's when it lists no devices; "" when
// unknown.
func statusOf(st *RequestStatus, d model.Device) string {
	if st == nil {
		return ""
	}
	for _, ds := range st.Devices {
		if matchDevice(&model.RequestRecord{Devices: []model.Device{d}}, model.Device{DeviceIDs: ds.IDs}) != nil {
			return strings.ToUpper(ds.Status)
		}
	}
	if len(st.Devices) == 0 {
		return strings.ToUpper(st.Status)
	}
	return ""
}

// submittedAt reads RequestRecord.SubmittedAt, whose unit the record does
// not state: Unix seconds, or milliseconds/micro/nanoseconds by magnitude.
func submittedAt(v int64) time.Time {
	switch {
	case v <= 0:
		return time.Time{}
	case v > 1e17:
		return time.Unix(0, v)
	case v > 1e14:
		return time.UnixMicro(v)
	case v > 1e11:
		return time.UnixMilli(v)
	}
	return time.Unix(v, 0)
}

// dueQueue holds request ids to look at again, earliest first, each once.
type dueQueue struct {
	items dueItems
	at    map[string]time.Time // id -> its due time in items
}

type dueItem struct {
	due time.Time
	id  string
}

type dueItems []dueItem

func (d dueItems) Len() int           { return len(d) }
func (d dueItems) Less(i, j int) bool { return d[i].due.Before(d[j].due) }
func (d dueItems) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *dueItems) Push(x any)        { *d = append(*d, x.(dueItem)) }
func (d *dueItems) Pop() any {
	old := *d
	it := old[len(old)-1]
	*d = old[:len(old)-1]
	return it
}

// push queues id for due; an id already queued keeps the earlier time.
func (q *dueQueue) push(due time.Time, id string) {
	if q.at == nil {
		q.at = map[string]time.Time{}
	}
	if have, ok := q.at[id]; ok && !due.Before(have) {
		return
	}
	q.at[id] = due
	heap.Push(&q.items, dueItem{due: due, id: id})
}

// popDue removes and returns the ids due at now.
func (q *dueQueue) popDue(now time.Time) []string {
	var out []string
	for len(q.items) > 0 && !q.items[0].due.After(now) {
		it := heap.Pop(&q.items).(dueItem)
		if q.at[it.id] != it.due {
			continue // superseded by an earlier push
		}
		delete(q.at, it.id)
		out = append(out, it.id)
	}
	return out
}

// Len is the number of ids queued.
func (q *dueQueue) Len() int { return len(q.at) }
