package callback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
)

// Correlator settings.
const (
	// ConsumerName is the correlator's durable consumer, shared by every
	// correlator process so that each callback goes to one of them.
	ConsumerName = "correlator"
	// AckWait is how long a delivered callback may stay unacknowledged
	// before another correlator gets it; a batch takes well under it.
	AckWait = 30 * time.Second
	// RetryDelay is the pause before a callback is delivered again when a
	// step failed.
	RetryDelay = time.Second
	// FirstWaitDelay is the pause before the first redelivery of a callback
	// whose request record is not there yet; each further one doubles it,
	// up to what is left of UnmatchedWait. Most records are a few
	// milliseconds late (the callback raced the worker's write), a few are
	// late by much more, and a fixed long pause would cost the first kind
	// a second each.
	FirstWaitDelay = 100 * time.Millisecond
	// RecordWait is how long a callback's first delivery waits, in the
	// batch, for a request record that is not there yet before it is
	// nakked: the simulator (and ThingSpace) can call back before the
	// worker has stored the record of the request it just answered.
	RecordWait = 150 * time.Millisecond
	// batchLinger is how long a partial batch waits for more callbacks:
	// short enough to be invisible, long enough to fill batches under load.
	batchLinger = 20 * time.Millisecond
	// batchTimeout bounds one batch, also during shutdown.
	batchTimeout = 20 * time.Second
	// pumpFetchWait bounds one fetch that finds nothing; pumpFullWait is
	// the pause while the batch queue is full.
	pumpFetchWait = time.Second
	pumpFullWait  = 5 * time.Millisecond
	// maxRequestIDLen bounds what is looked up; request ids are UUIDs.
	maxRequestIDLen = 128
	// unknownAccount names the account of an unmatched callback, which
	// carries none.
	unknownAccount = "unknown"
	// recordCacheSize bounds the request records kept between batches.
	recordCacheSize = 8192
	// lookupParallelism bounds the KV reads and publishes of a batch in
	// flight at once.
	lookupParallelism = 64
)

// Correlator turns stored callbacks into device events and outcomes.
type Correlator struct {
	cfg   Config
	bus   *queue.Bus
	tr    *progress.Tracker
	log   *zap.Logger
	cache recordCache
	now   func() time.Time
	// recordWait is RecordWait; tests lengthen it.
	recordWait time.Duration
}

// NewCorrelator checks cfg and returns a correlator; Run starts it.
func NewCorrelator(cfg Config, bus *queue.Bus, tr *progress.Tracker, log *zap.Logger) (*Correlator, error) {
	cfg = cfg.Defaulted()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bus == nil || tr == nil {
		return nil, errors.New("callback: correlator needs a bus and a progress tracker")
	}
	if log == nil {
		log = zap.NewNop()
	}
	registerTracker(tr)
	return &Correlator{
		cfg: cfg, bus: bus, tr: tr, log: log.Named("correlator"),
		cache:      recordCache{m: map[string]*model.RequestRecord{}},
		now:        time.Now,
		recordWait: RecordWait,
	}, nil
}

// Run consumes callbacks until ctx is done. The batch in hand when ctx ends
// is finished (within batchTimeout); what is left is redelivered to another
// correlator.
func (c *Correlator) Run(ctx context.Context) error {
	cons, err := c.bus.JS.CreateOrUpdateConsumer(ctx, queue.StreamCallbacks, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "correlates raw callbacks with their requests",
		FilterSubject: queue.CallbackSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       AckWait,
		MaxDeliver:    -1,
		MaxAckPending: c.cfg.Batch * 16,
	})
	if err != nil {
		return fmt.Errorf("creating correlator consumer: %w", err)
	}
	c.log.Info("correlator_started", zap.Int("batch", c.cfg.Batch))

	// Twice a batch: the next batch is fetched while one is processed.
	msgs := make(chan jetstream.Msg, 2*c.cfg.Batch)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.pump(cons, msgs, done) })
	defer func() {
		close(done)
		wg.Wait()
		// Hand back what was fetched but not started, so that another
		// correlator has it now rather than after AckWait.
		for {
			select {
			case m := <-msgs:
				_ = m.Nak()
				continue
			default:
			}
			break
		}
		c.log.Info("correlator_stopped")
	}()

	for {
		var batch []jetstream.Msg
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			batch = append(batch, m)
		}
		timer := time.NewTimer(batchLinger)
	fill:
		for len(batch) < c.cfg.Batch {
			select {
			case m := <-msgs:
				batch = append(batch, m)
			case <-timer.C:
				break fill
			}
		}
		timer.Stop()
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), batchTimeout)
		c.process(bctx, batch)
		cancel()
	}
}

// pump fetches callbacks into msgs until done is closed, asking only for
// as many as msgs has room for. A continuous pull (Consume, Messages)
// outruns a correlator stalled by a failing-over cluster: after a reconnect
// the client issues its pulls again, its buffer overflows, and the
// messages it drops come back only after AckWait.
func (c *Correlator) pump(cons jetstream.Consumer, msgs chan<- jetstream.Msg, done <-chan struct{}) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-done
		cancel()
	}()
	pause := func(d time.Duration) bool {
		select {
		case <-done:
			return false
		case <-time.After(d):
			return true
		}
	}
	for ctx.Err() == nil {
		room := cap(msgs) - len(msgs)
		if room == 0 {
			if !pause(pumpFullWait) {
				return
			}
			continue
		}
		fctx, fcancel := context.WithTimeout(ctx, pumpFetchWait)
		batch, err := cons.Fetch(room, jetstream.FetchContext(fctx))
		if err != nil {
			fcancel()
			c.log.Debug("callback_fetch_failed", zap.Error(err))
			if !pause(100 * time.Millisecond) {
				return
			}
			continue
		}
		for m := range batch.Messages() {
			select {
			case msgs <- m:
			case <-done:
				_ = m.Nak()
			}
		}
		fcancel()
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) &&
			!errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			c.log.Debug("callback_fetch_failed", zap.Error(err))
		}
	}
}

// item is one callback of a batch.
type item struct {
	msg jetstream.Msg
	cb  model.Callback
	seq uint64
	age time.Duration
	// delivered counts the deliveries of the message, this one included.
	delivered uint64
	rec       *model.RequestRecord
	// lookupErr says the record could not be read (as opposed to absent).
	lookupErr bool
}

// process handles one batch: every message is acked, or nakked with a delay
// to come back, before it returns.
func (c *Correlator) process(ctx context.Context, msgs []jetstream.Msg) {
	counters.batches.Add(1)
	items := make([]*item, 0, len(msgs))
	for _, m := range msgs {
		it := &item{msg: m}
		if md, err := m.Metadata(); err == nil {
			it.seq = md.Sequence.Stream
			it.age = c.now().Sub(md.Timestamp)
			it.delivered = md.NumDelivered
		}
		cb, err := Decode(m.Data())
		if err != nil {
			c.deadLetter(ctx, m, err)
			continue
		}
		counters.decoded.Add(1)
		it.cb = cb
		items = append(items, it)
	}
	if len(items) == 0 {
		return
	}

	if err := c.lookup(ctx, items); err != nil {
		c.log.Warn("request_lookup_failed", zap.Error(err))
	}
	var ready, early []*item
	for _, it := range items {
		switch {
		case it.lookupErr:
			// Not knowing is not "not found": try again, do not let the
			// callback run out its wait and be called unmatched.
			_ = it.msg.NakWithDelay(RetryDelay)
		case it.rec == nil && it.delivered <= 1 && lookupable(it.cb.RequestID) &&
			it.age < c.cfg.UnmatchedWait:
			early = append(early, it)
		default:
			ready = append(ready, it)
		}
	}
	if len(early) == 0 {
		c.handle(ctx, ready)
		return
	}
	// The early ones wait for their records while the rest goes ahead.
	var wg sync.WaitGroup
	wg.Go(func() { c.awaitRecords(ctx, early) })
	c.handle(ctx, ready)
	wg.Wait()
	c.handle(ctx, early)
}

// handle publishes the events of items whose record lookup is done, and
// acks or naks every one of them.
func (c *Correlator) handle(ctx context.Context, items []*item) {
	var (
		outcomes []progress.Outcome
		finals   []jetstream.Msg
		events   []model.Event
		replyTo  []string
		others   []*item
	)
	for _, it := range items {
		e, final, ok := c.event(it)
		if !ok {
			continue // nakked to wait for its record
		}
		if final {
			outcomes = append(outcomes, progress.Outcome{
				Event: e, ReplyTo: it.rec.ReplyTo, Source: "cb-" + strconv.FormatUint(it.seq, 10),
			})
			finals = append(finals, it.msg)
			continue
		}
		rt := ""
		if it.rec != nil {
			rt = it.rec.ReplyTo
		}
		events = append(events, e)
		replyTo = append(replyTo, rt)
		others = append(others, it)
	}

	// Non-final events go first: a device's status callback comes before
	// its final one, and consumers read the stream in order.
	c.publishOthers(ctx, events, replyTo, others)

	if len(outcomes) > 0 {
		if err := c.tr.Record(ctx, outcomes); err != nil {
			counters.recordFailed.Add(1)
			c.log.Warn("outcomes_record_failed", zap.Int("outcomes", len(outcomes)), zap.Error(err))
			for _, m := range finals {
				_ = m.NakWithDelay(RetryDelay)
			}
		} else {
			counters.finals.Add(int64(len(outcomes)))
			for _, m := range finals {
				_ = m.Ack()
			}
		}
	}
}

// publishOthers publishes the batch's non-final events (device.status,
// device.unmatched) and settles their messages. A status for a device that
// already has its final outcome is dropped: it was overtaken.
func (c *Correlator) publishOthers(ctx context.Context, events []model.Event, replyTo []string, others []*item) {
	// Statuses only: an unmatched event has no outcome to be overtaken by.
	asks := make([]model.Event, len(events))
	for i, e := range events {
		if e.Type == model.EventDeviceStatus {
			asks[i] = e
		}
	}
	done, err := c.tr.HasOutcomes(ctx, asks)
	if err != nil {
		// The statuses wait for the next try; the rest goes on.
		c.log.Warn("outcome_check_failed", zap.Error(err))
	}
	keep := events[:0:0]
	var keepReply []string
	var keepItems []*item
	for i, e := range events {
		if e.Type == model.EventDeviceStatus {
			switch {
			case err != nil:
				_ = others[i].msg.NakWithDelay(RetryDelay)
				continue
			case done[i]:
				counters.staleStatus.Add(1)
				_ = others[i].msg.Ack()
				continue
			}
		}
		keep, keepReply, keepItems = append(keep, e), append(keepReply, replyTo[i]), append(keepItems, others[i])
	}
	events, replyTo, others = keep, keepReply, keepItems
	if len(events) == 0 {
		return
	}
	for i, err := range c.bus.PublishEvents(ctx, events, replyTo) {
		if err != nil {
			c.log.Warn("event_publish_failed", zap.String("type", events[i].Type), zap.Error(err))
			_ = others[i].msg.NakWithDelay(RetryDelay)
			continue
		}
		if events[i].Type == model.EventDeviceUnmatched {
			counters.unmatched.Add(1)
		} else {
			counters.statusEvents.Add(1)
		}
		_ = others[i].msg.Ack()
	}
}

// awaitPolls are the pauses between the reads of awaitRecords: short first,
// since a record that is late at all is usually late by milliseconds.
var awaitPolls = []time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 15 * time.Millisecond, 20 * time.Millisecond,
}

// awaitRecords reads the records of items again, a few times over at most
// recordWait (and never past a callback's UnmatchedWait), and sets the ones
// that appear. A read that fails counts as not found here; the callback is
// then nakked and its redelivery looks again.
func (c *Correlator) awaitRecords(ctx context.Context, items []*item) {
	counters.awaited.Add(int64(len(items)))
	wait := c.recordWait
	for _, it := range items {
		wait = min(wait, c.cfg.UnmatchedWait-it.age)
	}
	deadline := time.Now().Add(wait)
	missing := map[string][]*item{}
	for _, it := range items {
		missing[it.cb.RequestID] = append(missing[it.cb.RequestID], it)
	}
	for round := 0; len(missing) > 0; round++ {
		pause := awaitPolls[min(round, len(awaitPolls)-1)]
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(pause, left)):
		}
		ids := slices.Collect(maps.Keys(missing))
		found := make([]*model.RequestRecord, len(ids))
		var g errgroup.Group
		g.SetLimit(lookupParallelism)
		for i, id := range ids {
			g.Go(func() error {
				found[i], _ = c.read(ctx, id)
				return nil
			})
		}
		_ = g.Wait()
		for i, rec := range found {
			if rec == nil {
				continue
			}
			its := missing[ids[i]]
			c.cache.put(ids[i], rec)
			counters.awaitedFound.Add(int64(len(its)))
			for _, it := range its {
				it.rec = rec
			}
			delete(missing, ids[i])
		}
	}
}

// read returns the request record of id, or nil when there is none.
func (c *Correlator) read(ctx context.Context, id string) (*model.RequestRecord, error) {
	entry, err := c.bus.Requests.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading request %s: %w", id, err)
	}
	var r model.RequestRecord
	if err := json.Unmarshal(entry.Value(), &r); err != nil {
		return nil, fmt.Errorf("reading request %s: %w", id, err)
	}
	return &r, nil
}

// waitDelay is the pause before the next delivery of a callback that has
// been delivered n times without its request record, with left of its
// UnmatchedWait to go: FirstWaitDelay, doubled per delivery, never past
// left.
func waitDelay(n uint64, left time.Duration) time.Duration {
	d := FirstWaitDelay
	for i := uint64(1); i < n && d < left; i++ {
		d *= 2
	}
	return max(min(d, left), 0)
}

// event builds the callback's event. ok is false when the callback was
// nakked to wait for its request record.
func (c *Correlator) event(it *item) (e model.Event, final, ok bool) {
	cb := &it.cb
	if it.rec == nil {
		if it.age < c.cfg.UnmatchedWait && lookupable(cb.RequestID) {
			counters.waiting.Add(1)
			_ = it.msg.NakWithDelay(waitDelay(it.delivered, c.cfg.UnmatchedWait-it.age))
			return e, false, false
		}
		dev := cb.Device
		return model.Event{
			Type: model.EventDeviceUnmatched, JobID: model.UnknownJobID, AccountName: unknownAccount,
			At: c.now().UTC(), RequestID: cb.RequestID, Device: &dev, Status: cb.Status, Fault: cb.Fault,
		}, false, true
	}
	rec := it.rec
	e = model.Event{
		JobID: rec.JobID, AccountName: rec.AccountName, At: c.now().UTC(),
		RequestID: rec.RequestID, Status: cb.Status,
	}
	dev := matchDevice(rec, cb.Device)
	if dev == nil {
		// The request is known but not this device: report it under the
		// job, where someone will look.
		d := cb.Device
		e.Type, e.Device, e.Fault = model.EventDeviceUnmatched, &d, cb.Fault
		return e, false, true
	}
	e.Device = dev
	switch cb.Status {
	case model.StatusSuccess:
		e.Type = model.EventDeviceSucceeded
		return e, true, true
	case model.StatusFailed:
		e.Type, e.Fault = model.EventDeviceFailed, cb.Fault
		return e, true, true
	}
	e.Type, e.Fault = model.EventDeviceStatus, cb.Fault
	return e, false, true
}

// lookupable reports whether a request id could be a key of a request
// record; one that cannot is unmatched at once, without waiting.
func lookupable(id string) bool {
	return len(id) <= maxRequestIDLen && queue.ValidKey(id)
}

// lookup finds the request record of every item, reading each request id
// once per batch and keeping found records between batches.
func (c *Correlator) lookup(ctx context.Context, items []*item) error {
	ids := map[string]*model.RequestRecord{}
	failed := map[string]bool{}
	for _, it := range items {
		if lookupable(it.cb.RequestID) {
			ids[it.cb.RequestID] = c.cache.get(it.cb.RequestID)
		}
	}
	var (
		mu   sync.Mutex
		errs []error
		g    errgroup.Group
	)
	g.SetLimit(lookupParallelism)
	var missing []string
	for id, rec := range ids {
		if rec == nil {
			missing = append(missing, id)
		}
	}
	for _, id := range missing {
		g.Go(func() error {
			r, err := c.read(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[id] = true
				errs = append(errs, err)
				return nil
			}
			if r != nil {
				ids[id] = r
				c.cache.put(id, r)
			}
			return nil
		})
	}
	_ = g.Wait()
	for _, it := range items {
		it.rec = ids[it.cb.RequestID]
		it.lookupErr = failed[it.cb.RequestID]
	}
	return errors.Join(errs...)
}

// matchDevice returns the request's device that shares an identifier with
// the callback's device.
func matchDevice(rec *model.RequestRecord, d model.Device) *model.Device {
	for i := range rec.Devices {
		for _, want := range rec.Devices[i].DeviceIDs {
			for _, got := range d.DeviceIDs {
				if got.ID == want.ID && strings.EqualFold(got.Kind, want.Kind) {
					dev := rec.Devices[i]
					return &dev
				}
			}
		}
	}
	return nil
}

// deadLetter keeps an undecodable callback in FALLBACK_DEAD with the
// reason, with its password removed, and acks it. When the dead letter
// cannot be stored the callback comes back later.
func (c *Correlator) deadLetter(ctx context.Context, m jetstream.Msg, cause error) {
	body := redactBody(m.Data())
	if err := c.bus.DeadLetter(ctx, queue.DeadCallbacks, cause.Error(), body, m.Subject()); err != nil {
		c.log.Warn("dead_letter_failed", zap.Error(err))
		_ = m.NakWithDelay(RetryDelay)
		return
	}
	counters.deadLettered.Add(1)
	c.log.Warn("callback_dead_lettered", zap.Error(cause))
	_ = m.Ack()
}

// redactBody replaces the username and password members of a JSON object,
// the credentials ThingSpace echoes; a body that is not one is kept as it is
// (the ingester stores only JSON objects).
func redactBody(body []byte) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return body
	}
	changed := false
	for k := range obj {
		if f := fold(k); f == "password" || f == "username" {
			obj[k] = json.RawMessage(`"[redacted]"`)
			changed = true
		}
	}
	if !changed {
		return body
	}
	out, err := json.Marshal(obj)
	if err != nil {
		return body
	}
	return out
}

// recordCache keeps request records between batches: the callbacks of one
// request arrive together, and a record never changes once written.
type recordCache struct {
	mu sync.Mutex
	m  map[string]*model.RequestRecord
}

func (rc *recordCache) get(id string) *model.RequestRecord {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.m[id]
}

func (rc *recordCache) put(id string, r *model.RequestRecord) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.m) >= recordCacheSize {
		// Dropping everything is crude but bounded; the next batch reads
		// the records it needs again.
		clear(rc.m)
	}
	rc.m[id] = r
}
