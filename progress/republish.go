package progress

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

// republishScanBatch is how many event headers one fetch of the scan reads.
const republishScanBatch = 256

// republishScanTimeout bounds one look; callers treat a look that fails
// as "not found".
const republishScanTimeout = 3 * time.Second

// clockSlack widens the scan back in time, for clocks of the servers of a
// cluster that disagree by a little.
const clockSlack = time.Minute

// mustLookBeforeRepublish reports whether a redone outcome stored at
// created may be older than the stream's duplicate window, in which case a
// second publish would not be dropped by the stream. Half the window is a
// margin for the distance between our clock and the server's.
func (t *Tracker) mustLookBeforeRepublish(ctx context.Context, created time.Time) bool {
	t.windowMu.Lock()
	if t.window == 0 {
		// Read until it succeeds: a failure during a failover must not
		// make every later redo look, for the life of the process.
		// Bounded: the lock is held, and a stream info request lost in
		// a failover would otherwise hold every caller for the whole of
		// ctx.
		sctx, cancel := context.WithTimeout(ctx, republishScanTimeout)
		if st, err := t.bus.JS.Stream(sctx, queue.StreamResults); err == nil {
			t.window = st.CachedInfo().Config.Duplicates
		}
		cancel()
	}
	window := t.window
	t.windowMu.Unlock()
	if window == 0 {
		return true // unknown: look
	}
	return t.now().Sub(created) >= window/2
}

// published reports whether e is already in FALLBACK_RESULTS, looking at
// the headers of its job's events stored since since. It is the recovery
// path of a redelivery that came after the duplicate window, so its cost
// (the job's events since then) is paid rarely.
func (t *Tracker) published(ctx context.Context, e *model.Event, since time.Time) (bool, error) {
	start := since.Add(-clockSlack)
	ctx, cancel := context.WithTimeout(ctx, republishScanTimeout)
	defer cancel()
	// A plain ephemeral consumer, not an ordered one: nats.go's ordered
	// consumer re-creates its server consumer on every fetch, with its
	// own background contexts and without end, so after a node's loss
	// (the R1 consumer placed on the dead node) a look could hang for as
	// long as the cluster takes to notice, ignoring ctx. This one is
	// created within ctx, and a no-wait fetch ends within a second.
	cons, err := t.bus.JS.CreateConsumer(ctx, queue.StreamResults, jetstream.ConsumerConfig{
		FilterSubject: queue.ResultSubject(e.AccountName, e.JobID),
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
		AckPolicy:     jetstream.AckNonePolicy,
		HeadersOnly:   true,
		Replicas:      1,
		MemoryStorage: true,
		// Used once: let the server drop it soon after.
		InactiveThreshold: 10 * time.Second,
	})
	if err != nil {
		return false, fmt.Errorf("looking for event %s: %w", e.MsgID(), err)
	}
	id := e.MsgID()
	for {
		if err := ctx.Err(); err != nil {
			return false, fmt.Errorf("looking for event %s: %w", id, err)
		}
		batch, err := cons.FetchNoWait(republishScanBatch)
		if err != nil {
			return false, fmt.Errorf("looking for event %s: %w", id, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if m.Headers().Get(jetstream.MsgIDHeader) == id {
				return true, nil
			}
		}
		if err := batch.Error(); err != nil && err != jetstream.ErrNoMessages {
			return false, fmt.Errorf("looking for event %s: %w", id, err)
		}
		if n == 0 {
			return false, nil
		}
	}
}
