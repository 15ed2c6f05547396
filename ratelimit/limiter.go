package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Pause and ramp settings.
const (
	// DefaultPause is used when a 429 names no Retry-After.
	DefaultPause = 2 * time.Second
	// MaxPause caps a Retry-After, so that a garbled header cannot stop
	// the deployment for hours.
	MaxPause = 10 * time.Minute
	// RampDuration is how long the rate takes to climb back to the full
	// share after a pause ends.
	RampDuration = 10 * time.Second
	// RampStart is the fraction of the share allowed when a pause ends.
	RampStart = 0.25
	// MinRampStart bounds the halving of RampStart by repeated pauses.
	MinRampStart = 1.0 / 256
	// MaxRamp bounds the ramp's lengthening by repeated pauses.
	MaxRamp = 5 * time.Minute
)

// ErrClosed is returned by Wait after Close.
var ErrClosed = errors.New("ratelimit: limiter closed")

// ErrLongPause is returned by WaitUpTo when the deployment is paused for
// longer than the caller can wait; PausedUntil says until when.
var ErrLongPause = errors.New("ratelimit: paused for longer than the caller waits")

// Limiter hands out this process's share of the deployment's requests.
// It is safe for concurrent use.
type Limiter struct {
	cfg   Config
	log   *zap.Logger
	local *rate.Limiter

	// mb is nil for a limiter without a workers bucket.
	mb *membership

	mu sync.Mutex
	// members is the number of live processes, this one included, and
	// busy the number of them that ask for tokens, this one included: the
	// budget is shared by the busy ones, so that a process without work
	// does not hold a share the others could use.
	members, busy int
	// waiting counts the calls of Wait in progress and lastAsk is when the
	// last one started or ended: together they say whether this process is
	// idle.
	waiting int
	lastAsk time.Time
	// wake tells the membership that Wait was called.
	wake chan struct{}
	// idleAfter is the membership's (0 without one). wokeAt is when this
	// process last asked for a token after an idle spell: for settle
	// after it, it shares the budget with every member, busy or idle.
	// The others may have woken at the same moment (after a NATS outage
	// every worker idles, then all resume at once), each seeing the rest
	// idle; taking only the busy count's share then sent the budget
	// several times over for a heartbeat and earned a 429.
	idleAfter, settle time.Duration
	wokeAt            time.Time
	// pausedUntil ends the current (or last) pause; the ramp starts there.
	pausedUntil time.Time
	// rampStart and ramp shape the climb after the pause: a pause that
	// comes while the last ramp is still climbing means the budget is
	// above what ThingSpace grants (or another client shares it), so the
	// next ramp starts at half the height and takes twice as long.
	rampStart float64
	ramp      time.Duration
	// drained records that the tokens saved up during the last pause
	// were thrown away.
	drained bool
	// changed is closed and replaced when a pause starts or the share
	// changes, so that waiters take a fresh look.
	changed chan struct{}
	closed  bool
}

// New returns a limiter for the process named id. With a workers bucket it
// joins the deployment's membership and waits until it has seen the
// current members and pause, so that its first share is right; with a nil
// bucket it is a single local limiter (tests, demo).
func New(ctx context.Context, cfg Config, workers jetstream.KeyValue, id string,
	log *zap.Logger) (*Limiter, error) {
	return newLimiter(ctx, cfg, workers, id, log, defaultTiming())
}

func newLimiter(ctx context.Context, cfg Config, workers jetstream.KeyValue, id string,
	log *zap.Logger, tm timing) (*Limiter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	l := &Limiter{
		cfg:       cfg,
		log:       log.Named("ratelimit"),
		local:     rate.NewLimiter(rate.Limit(cfg.RPS), cfg.Burst),
		members:   1,
		busy:      1,
		lastAsk:   time.Now(),
		wake:      make(chan struct{}, 1),
		rampStart: RampStart,
		ramp:      RampDuration,
		drained:   true,
		changed:   make(chan struct{}),
	}
	if workers != nil {
		mb, err := startMembership(ctx, l, workers, id, tm)
		if err != nil {
			return nil, err
		}
		l.mb = mb
		l.mu.Lock()
		// Long enough for the others to hear that this process is busy
		// again, and for it to hear whether they are.
		l.idleAfter, l.settle = tm.idleAfter, tm.heartbeat
		l.mu.Unlock()
	}
	l.mu.Lock()
	l.applyLocked(time.Now())
	l.mu.Unlock()
	l.log.Info("ratelimit_started", zap.Float64("rps", cfg.RPS), zap.Int("burst", cfg.Burst),
		zap.Bool("shared", workers != nil))
	return l, nil
}

// Wait blocks until this process may send one request, or until ctx ends.
// A pause that starts while it waits holds it until the pause ends.
func (l *Limiter) Wait(ctx context.Context) error {
	return l.WaitUpTo(ctx, 0)
}

// WaitUpTo is Wait for a caller that must not hold its work through a long
// pause (a job whose message others could take): when a pause of more than
// longest is running, or starts while it waits, it returns ErrLongPause at
// once instead. A longest of 0 or less waits out any pause, like Wait.
func (l *Limiter) WaitUpTo(ctx context.Context, longest time.Duration) error {
	l.mu.Lock()
	now := time.Now()
	if l.idleAfter > 0 && l.waiting == 0 && now.Sub(l.lastAsk) >= l.idleAfter {
		l.wokeAt = now
		// Tokens saved up while idle would go out at once, on top of
		// the others' shares.
		if n := int(l.local.TokensAt(now)); n > 0 {
			l.local.AllowN(now, n)
		}
	}
	l.waiting++
	l.lastAsk = now
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
	defer func() {
		l.mu.Lock()
		l.waiting--
		l.lastAsk = time.Now()
		l.mu.Unlock()
	}()
	return l.wait(ctx, longest)
}

// waiters returns the number of Wait calls in progress.
func (l *Limiter) waiters() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiting
}

// idleSince returns how long this process has not asked for a token: 0
// while a Wait is in progress.
func (l *Limiter) idleSince(now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waiting > 0 {
		return 0
	}
	return now.Sub(l.lastAsk)
}

func (l *Limiter) wait(ctx context.Context, longest time.Duration) error {
	for {
		now := time.Now()
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return ErrClosed
		}
		changed := l.changed
		if now.Before(l.pausedUntil) {
			d := l.pausedUntil.Sub(now)
			l.mu.Unlock()
			if longest > 0 && d > longest {
				return ErrLongPause
			}
			if err := sleep(ctx, d, changed); err != nil {
				return err
			}
			continue
		}
		l.applyLocked(now)
		r := l.local.ReserveN(now, 1)
		l.mu.Unlock()
		if !r.OK() {
			// Burst is at least 1, so this means a bug, not a busy limit.
			return fmt.Errorf("ratelimit: cannot reserve a token (limit %v, burst %d)",
				l.local.Limit(), l.local.Burst())
		}
		d := r.DelayFrom(now)
		if d <= 0 {
			return nil
		}
		err := sleep(ctx, d, changed)
		if err == nil {
			return nil
		}
		r.Cancel()
		if errors.Is(err, errChanged) {
			continue
		}
		return err
	}
}

var errChanged = errors.New("ratelimit: limit changed")

// sleep waits d, returning errChanged when changed is closed first and
// ctx's error when ctx ends first.
func sleep(ctx context.Context, d time.Duration, changed <-chan struct{}) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-changed:
		return errChanged
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Pause stops every process of the deployment from sending for d (a 429's
// Retry-After; DefaultPause when 0, at most MaxPause). A shorter pause than
// one already running changes nothing.
func (l *Limiter) Pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		d = DefaultPause
	}
	if d > MaxPause {
		d = MaxPause
	}
	until := time.Now().Add(d)
	if !l.setPause(until) {
		return
	}
	l.log.Warn("ratelimit_paused", zap.Duration("pause", d), zap.Time("until", until))
	if l.mb != nil {
		l.mb.broadcastPause(ctx, until)
	}
}

// setPause extends the pause to until; it reports whether it did.
func (l *Limiter) setPause(until time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !until.After(l.pausedUntil) {
		return false
	}
	now := time.Now()
	switch {
	case now.Before(l.pausedUntil):
		// Extending a running pause: the ramp is not yet known wrong.
	case !l.pausedUntil.IsZero() && now.Before(l.pausedUntil.Add(l.ramp)):
		l.rampStart = max(l.rampStart/2, MinRampStart)
		l.ramp = min(2*l.ramp, MaxRamp)
	default:
		l.rampStart, l.ramp = RampStart, RampDuration
	}
	l.pausedUntil = until
	l.drained = false
	l.notifyLocked()
	return true
}

// setMembers records the number of live processes and of busy ones.
func (l *Limiter) setMembers(n, busy int) {
	n = max(n, 1)
	busy = min(max(busy, 1), n)
	l.mu.Lock()
	defer l.mu.Unlock()
	if n == l.members && busy == l.busy {
		return
	}
	if n != l.members {
		l.log.Info("ratelimit_members_changed", zap.Int("members", n), zap.Int("was", l.members),
			zap.Int("busy", busy))
	}
	l.members, l.busy = n, busy
	l.applyLocked(time.Now())
	l.notifyLocked()
}

func (l *Limiter) notifyLocked() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// applyLocked sets the local bucket to the share due at now.
func (l *Limiter) applyLocked(now time.Time) {
	if !l.drained && !now.Before(l.pausedUntil) {
		// Tokens saved up during the pause would go out at once and
		// earn the next 429.
		if n := int(l.local.TokensAt(now)); n > 0 {
			l.local.AllowN(now, n)
		}
		l.drained = true
	}
	n := l.busy
	if now.Before(l.wokeAt.Add(l.settle)) {
		n = l.members
	}
	lim, burst := share(l.cfg, n, l.pausedUntil, now, l.rampStart, l.ramp)
	if l.local.Limit() != lim {
		l.local.SetLimitAt(now, lim)
	}
	if l.local.Burst() != burst {
		l.local.SetBurstAt(now, burst)
	}
}

// share returns one process's rate and burst when n processes are busy,
// ramping up from the fraction start over ramp after a pause that ended at
// pausedUntil.
func share(cfg Config, n int, pausedUntil, now time.Time, start float64,
	ramp time.Duration) (rate.Limit, int) {
	if n < 1 {
		n = 1
	}
	rps := cfg.RPS / float64(n)
	burst := max(cfg.Burst/n, 1)
	if !pausedUntil.IsZero() && ramp > 0 {
		if since := now.Sub(pausedUntil); since >= 0 && since < ramp {
			f := start + (1-start)*float64(since)/float64(ramp)
			return rate.Limit(rps * f), 1
		}
	}
	return rate.Limit(rps), burst
}

// Limit returns the current local rate and burst, this process's share.
func (l *Limiter) Limit() (rate.Limit, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.applyLocked(time.Now())
	return l.local.Limit(), l.local.Burst()
}

// MemberKey returns this process's key in the workers bucket, present
// there while the process lives (renewed every heartbeat, gone a TTL after
// it stops); "" for a limiter without a workers bucket.
func (l *Limiter) MemberKey() string {
	if l.mb == nil {
		return ""
	}
	return l.mb.key
}

// Budget returns the deployment's budget this limiter shares.
func (l *Limiter) Budget() Config { return l.cfg }

// Members returns the number of live processes this one counts, itself
// included.
func (l *Limiter) Members() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.members
}

// Busy returns the number of live processes that share the budget now:
// this one and the others that asked for a token lately.
func (l *Limiter) Busy() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.busy
}

// PausedUntil returns the end of the current or last pause (zero when
// there was none).
func (l *Limiter) PausedUntil() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pausedUntil
}

// Close leaves the membership, so that the others take this process's
// share at once, and makes Wait fail with ErrClosed.
func (l *Limiter) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.notifyLocked()
	l.mu.Unlock()
	if l.mb != nil {
		l.mb.stop(true)
	}
	l.log.Info("ratelimit_stopped")
}
