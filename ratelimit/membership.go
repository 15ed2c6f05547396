package ratelimit

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/queue"
)

// Keys in the workers bucket.
const (
	memberPrefix = "member."
	pauseKey     = "pause"
)

// DefaultHeartbeat is how often a process renews its membership key. It is
// a third of the bucket's TTL, so one lost heartbeat does not drop it.
const DefaultHeartbeat = 2 * time.Second

// timing holds the membership intervals; tests shorten them.
type timing struct {
	heartbeat time.Duration
	// ttl is how long a member counts without a heartbeat.
	ttl time.Duration
	// idleAfter is how long a process may go without asking for a token
	// before it announces itself idle and leaves its share to the busy
	// ones; 0 keeps every member busy.
	idleAfter time.Duration
}

// DefaultIdleAfter is how long a process waits without asking for a token
// before it gives its share to the others. A worker between two chunks
// asks again within milliseconds, so only one without jobs goes idle.
const DefaultIdleAfter = time.Second

func defaultTiming() timing {
	return timing{heartbeat: DefaultHeartbeat, ttl: queue.WorkersTTL, idleAfter: DefaultIdleAfter}
}

// idleSuffix marks the heartbeat of a process that has not asked for a
// token for a while. A value without it (an older process) counts as busy.
const idleSuffix = " idle"

// member is what this process knows of another.
type member struct {
	// seen is when its last heartbeat arrived.
	seen time.Time
	idle bool
}

var badKeyChars = regexp.MustCompile(`[^-_=a-zA-Z0-9]`)

// membership heartbeats this process's key and watches the bucket for the
// other members and for pauses.
type membership struct {
	l   *Limiter
	kv  jetstream.KeyValue
	id  string
	key string
	tm  timing
	log *zap.Logger

	cancel context.CancelFunc
	done   chan struct{}

	// Owned by the run goroutine (and by startMembership before it).
	seen     map[string]member
	selfSeen time.Time
	// freshSince is when our own heartbeats resumed after a gap. Others'
	// heartbeats were lost in that gap too (NATS was away), so nobody is
	// dropped for silence before a TTL of a working view has passed:
	// dropping a live member makes this process take its share, and both
	// then send over the budget and earn a 429.
	freshSince time.Time
	// idle is what the last heartbeat said of this process.
	idle bool

	mu sync.Mutex
	// ownPause is the end of the last pause this process announced; it
	// re-announces it on each heartbeat, so that the pause outlives the
	// bucket's TTL and reaches processes that start during it.
	ownPause time.Time
}

func startMembership(ctx context.Context, l *Limiter, kv jetstream.KeyValue, id string,
	tm timing) (*membership, error) {
	id = badKeyChars.ReplaceAllString(id, "_")
	if id == "" {
		id = uuid.NewString()
	}
	m := &membership{
		l:    l,
		kv:   kv,
		id:   id,
		key:  memberPrefix + id,
		tm:   tm,
		log:  l.log.With(zap.String("member", id)),
		done: make(chan struct{}),
		seen: map[string]member{},
	}
	if err := m.heartbeat(ctx); err != nil {
		return nil, fmt.Errorf("joining the rate limit membership: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	w, err := m.watch(ctx, runCtx)
	if err != nil {
		cancel()
		return nil, err
	}
	m.cancel = cancel
	go m.run(runCtx, w)
	return m, nil
}

// watch starts a watcher that lives as long as runCtx and applies the
// bucket's current content before returning, bounded by ctx.
func (m *membership) watch(ctx, runCtx context.Context) (jetstream.KeyWatcher, error) {
	w, err := m.kv.WatchAll(runCtx)
	if err != nil {
		return nil, fmt.Errorf("watching the rate limit membership: %w", err)
	}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("watching the rate limit membership: watcher closed")
			}
			if e == nil {
				m.recount(time.Now())
				return w, nil
			}
			m.handle(e, time.Now())
		case <-ctx.Done():
			_ = w.Stop()
			return nil, fmt.Errorf("reading the rate limit membership: %w", ctx.Err())
		}
	}
}

func (m *membership) run(ctx context.Context, w jetstream.KeyWatcher) {
	defer close(m.done)
	hb := time.NewTicker(m.tm.heartbeat)
	defer hb.Stop()
	// The idle check runs more often than the heartbeat, so that a share
	// left unused goes to the busy processes within about idleAfter.
	var idleTick <-chan time.Time
	if m.tm.idleAfter > 0 {
		t := time.NewTicker(max(m.tm.idleAfter/4, time.Millisecond))
		defer t.Stop()
		idleTick = t.C
	}
	var updates <-chan jetstream.KeyValueEntry
	if w != nil {
		updates = w.Updates()
	}
	for {
		select {
		case <-ctx.Done():
			if w != nil {
				_ = w.Stop()
			}
			return
		case e, ok := <-updates:
			if !ok {
				updates, w = nil, nil
				continue
			}
			if e != nil {
				m.handle(e, time.Now())
				m.recount(time.Now())
			}
		case <-m.l.wake:
			// A token asked for after an idle spell: announce the
			// process busy at once so that the others shrink their share.
			if m.idle {
				m.beat(ctx)
			}
		case now := <-idleTick:
			if !m.idle && m.l.idleSince(now) >= m.tm.idleAfter {
				m.beat(ctx)
			}
		case <-hb.C:
			if err := m.heartbeat(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("ratelimit_heartbeat_failed", zap.Error(err))
			}
			now := time.Now()
			m.recount(now)
			// Our own heartbeats not coming back means the watcher is
			// dead (the bucket was lost, for instance): start another.
			if w == nil || now.Sub(m.selfSeen) > m.tm.ttl {
				if w != nil {
					_ = w.Stop()
				}
				w, updates = m.rewatch(ctx)
			}
		}
	}
}

// beat sends a heartbeat out of turn, when the process turned busy or idle.
func (m *membership) beat(ctx context.Context) {
	was := m.idle
	if err := m.heartbeat(ctx); err != nil {
		if ctx.Err() == nil {
			m.log.Warn("ratelimit_heartbeat_failed", zap.Error(err))
		}
		return
	}
	if m.idle != was {
		m.log.Debug("ratelimit_activity_changed", zap.Bool("idle", m.idle))
	}
}

func (m *membership) rewatch(ctx context.Context) (jetstream.KeyWatcher, <-chan jetstream.KeyValueEntry) {
	wctx, cancel := context.WithTimeout(ctx, m.tm.heartbeat)
	defer cancel()
	w, err := m.watch(wctx, ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("ratelimit_watch_failed", zap.Error(err))
		}
		return nil, nil
	}
	return w, w.Updates()
}

// handle applies one bucket entry seen at now.
func (m *membership) handle(e jetstream.KeyValueEntry, now time.Time) {
	key := e.Key()
	gone := e.Operation() != jetstream.KeyValuePut
	switch {
	case strings.HasPrefix(key, memberPrefix):
		id := strings.TrimPrefix(key, memberPrefix)
		if gone {
			delete(m.seen, id)
			return
		}
		// Receive time, not the entry's own time: clocks of other hosts
		// do not matter, and entries older than the bucket TTL are gone.
		m.seen[id] = member{seen: now, idle: strings.HasSuffix(string(e.Value()), idleSuffix)}
		if id == m.id {
			if m.selfSeen.IsZero() || now.Sub(m.selfSeen) > 2*m.tm.heartbeat {
				m.freshSince = now
			}
			m.selfSeen = now
		}
	case key == pauseKey && !gone:
		n, err := strconv.ParseInt(string(e.Value()), 10, 64)
		if err != nil {
			m.log.Warn("ratelimit_bad_pause", zap.Error(err))
			return
		}
		if until := time.Unix(0, n); until.After(now) {
			m.l.setPause(until)
		}
	}
}

// stale is how long our own heartbeat may go unseen before the view is
// stale: two heartbeats, as the echo of each comes back within a round
// trip while the watcher works.
func (m *membership) stale() time.Duration { return min(2*m.tm.heartbeat, m.tm.ttl) }

// recount drops members not heard from within the TTL and sets the share.
func (m *membership) recount(now time.Time) {
	if now.Sub(m.selfSeen) > m.stale() {
		// The view is stale (NATS unreachable, or the watcher missing
		// updates after a restart): keep the last count rather than let
		// every process take the whole budget. The bound is our own
		// heartbeat's echo, not the TTL: with the TTL, others heard just
		// before our own last echo were dropped a moment before the view
		// was called stale, and this process took their shares.
		return
	}
	// This process always counts as busy in its own share: it computes
	// one only when it is about to send.
	n, busy := 0, 1
	self := false
	for id, mb := range m.seen {
		if now.Sub(later(mb.seen, m.freshSince)) > m.tm.ttl {
			delete(m.seen, id)
			continue
		}
		n++
		if id == m.id {
			self = true
		} else if !mb.idle {
			busy++
		}
	}
	if !self {
		n++
	}
	m.l.setMembers(n, busy)
}

func (m *membership) heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.tm.heartbeat)
	defer cancel()
	val := strconv.FormatInt(time.Now().UnixNano(), 10)
	m.idle = m.tm.idleAfter > 0 && m.l.idleSince(time.Now()) >= m.tm.idleAfter
	if m.idle {
		val += idleSuffix
	}
	if _, err := m.kv.Put(ctx, m.key, []byte(val)); err != nil {
		return fmt.Errorf("renewing membership key: %w", err)
	}
	m.mu.Lock()
	until := m.ownPause
	m.mu.Unlock()
	if time.Now().Before(until) && !m.l.PausedUntil().After(until) {
		if err := m.putPause(ctx, until); err != nil {
			return err
		}
	}
	return nil
}

// broadcastPause announces a pause to every process.
func (m *membership) broadcastPause(ctx context.Context, until time.Time) {
	m.mu.Lock()
	m.ownPause = until
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.tm.heartbeat)
	defer cancel()
	if err := m.putPause(ctx, until); err != nil {
		// The next heartbeat announces it again.
		m.log.Warn("ratelimit_pause_broadcast_failed", zap.Error(err))
	}
}

func (m *membership) putPause(ctx context.Context, until time.Time) error {
	val := strconv.FormatInt(until.UnixNano(), 10)
	if _, err := m.kv.Put(ctx, pauseKey, []byte(val)); err != nil {
		return fmt.Errorf("announcing pause: %w", err)
	}
	return nil
}

// stop ends the heartbeat; with leave it also deletes the membership key
// so that the others take this process's share at once.
func (m *membership) stop(leave bool) {
	m.cancel()
	<-m.done
	if !leave {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.tm.heartbeat)
	defer cancel()
	if err := m.kv.Delete(ctx, m.key); err != nil {
		m.log.Warn("ratelimit_leave_failed", zap.Error(err))
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
