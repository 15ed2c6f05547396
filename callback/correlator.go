package callback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	// RetryDelay is the pause before a callback is delivered again, when
	// its request record is not there yet or a step failed.
	RetryDelay = time.Second
	// batchLinger is how long a partial batch waits for more callbacks:
	// short enough to be invisible, long enough to fill batches under load.
	batchLinger = 20 * time.Millisecond
	// batchTimeout bounds one batch, also during shutdown.
	batchTimeout = 20 * time.Second
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
		cache: recordCache{m: map[string]*model.RequestRecord{}},
		now:   time.Now,
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
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * c.cfg.Batch))
	if err != nil {
		return fmt.Errorf("consuming callbacks: %w", err)
	}
	c.log.Info("correlator_started", zap.Int("batch", c.cfg.Batch))

	msgs := make(chan jetstream.Msg, c.cfg.Batch)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { c.pump(it, msgs, done) })
	defer func() {
		close(done)
		it.Stop()
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

// pump moves messages from the iterator to msgs until done is closed.
func (c *Correlator) pump(it jetstream.MessagesContext, msgs chan<- jetstream.Msg, done <-chan struct{}) {
	for {
		m, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return
		}
		if err != nil {
			c.log.Debug("callback_fetch_failed", zap.Error(err))
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		select {
		case msgs <- m:
		case <-done:
			return
		}
	}
}

// item is one callback of a batch.
type item struct {
	msg jetstream.Msg
	cb  model.Callback
	seq uint64
	age time.Duration
	rec *model.RequestRecord
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
	kept := items[:0]
	for _, it := range items {
		if it.lookupErr {
			// Not knowing is not "not found": try again, do not let the
			// callback run out its wait and be called unmatched.
			_ = it.msg.NakWithDelay(RetryDelay)
			continue
		}
		kept = append(kept, it)
	}
	items = kept

	var (
		outcomes []progress.Outcome
		finals   []jetstream.Msg
		g        errgroup.Group
	)
	g.SetLimit(lookupParallelism)
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
		g.Go(func() error {
			replyTo := ""
			if it.rec != nil {
				replyTo = it.rec.ReplyTo
			}
			if err := c.bus.PublishEvent(ctx, e, replyTo); err != nil {
				c.log.Warn("event_publish_failed", zap.String("type", e.Type), zap.Error(err))
				_ = it.msg.NakWithDelay(RetryDelay)
				return nil
			}
			if e.Type == model.EventDeviceUnmatched {
				counters.unmatched.Add(1)
			} else {
				counters.statusEvents.Add(1)
			}
			_ = it.msg.Ack()
			return nil
		})
	}

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
	_ = g.Wait()
}

// event builds the callback's event. ok is false when the callback was
// nakked to wait for its request record.
func (c *Correlator) event(it *item) (e model.Event, final, ok bool) {
	cb := &it.cb
	if it.rec == nil {
		if it.age < c.cfg.UnmatchedWait && lookupable(cb.RequestID) {
			counters.waiting.Add(1)
			_ = it.msg.NakWithDelay(min(RetryDelay, c.cfg.UnmatchedWait-it.age))
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
	if id == "" || len(id) > maxRequestIDLen || id[0] == '.' || id[len(id)-1] == '.' ||
		strings.Contains(id, "..") {
		return false
	}
	return kvKeyToken(id)
}

func kvKeyToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '-' || c == '/' || c == '_' || c == '=' || c == '.' ||
			(c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return false
		}
	}
	return true
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
			entry, err := c.bus.Requests.Get(ctx, id)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil
			}
			var r model.RequestRecord
			if err == nil {
				err = json.Unmarshal(entry.Value(), &r)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed[id] = true
				errs = append(errs, fmt.Errorf("reading request %s: %w", id, err))
				return nil
			}
			ids[id] = &r
			c.cache.put(id, &r)
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

// redactBody replaces a password member of a JSON object; a body that is
// not one is kept as it is (the ingester stores only JSON objects).
func redactBody(body []byte) []byte {
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return body
	}
	changed := false
	for k := range obj {
		if fold(k) == "password" {
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
