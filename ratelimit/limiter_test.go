package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/time/rate"

	"github.com/tsfallback/tsfallback/queue/queuetest"
)

// fastTiming makes membership changes visible within a second.
var fastTiming = timing{heartbeat: 100 * time.Millisecond, ttl: 600 * time.Millisecond}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestShare(t *testing.T) {
	cfg := Config{RPS: 10, Burst: 10}
	now := time.Now()
	tests := []struct {
		name      string
		n         int
		paused    time.Time
		wantLimit rate.Limit
		wantBurst int
	}{
		{"alone", 1, time.Time{}, 10, 10},
		{"two", 2, time.Time{}, 5, 5},
		{"three", 3, time.Time{}, 10.0 / 3, 3},
		{"more than burst", 20, time.Time{}, 0.5, 1},
		{"zero counts as one", 0, time.Time{}, 10, 10},
		{"ramp start", 2, now, 5 * RampStart, 1},
		{"mid ramp", 2, now.Add(-RampDuration / 2), 5 * (RampStart + (1-RampStart)/2), 1},
		{"after ramp", 2, now.Add(-RampDuration), 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim, burst := share(cfg, tt.n, tt.paused, now, RampStart, RampDuration)
			if diff := float64(lim - tt.wantLimit); diff > 1e-9 || diff < -1e-9 || burst != tt.wantBurst {
				t.Fatalf("share = %v, %d; want %v, %d", lim, burst, tt.wantLimit, tt.wantBurst)
			}
		})
	}
}

func TestLocalLimiter(t *testing.T) {
	ctx := context.Background()
	l, err := New(ctx, Config{RPS: 1000, Burst: 5}, nil, "solo", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if lim, burst := l.Limit(); lim != 1000 || burst != 5 || l.Members() != 1 {
		t.Fatalf("Limit = %v, %d, members %d", lim, burst, l.Members())
	}
	for range 5 {
		if err := l.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// A pause holds Wait until ctx ends, and the ramp follows it.
	l.Pause(ctx, time.Hour)
	if got := time.Until(l.PausedUntil()); got < MaxPause-time.Minute || got > MaxPause {
		t.Fatalf("pause of an hour lasts %s, want it capped at %s", got, MaxPause)
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if err := l.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait during pause = %v, want deadline exceeded", err)
	}

	// A shorter pause does not shorten the running one.
	before := l.PausedUntil()
	l.Pause(ctx, time.Second)
	if !l.PausedUntil().Equal(before) {
		t.Fatalf("a shorter pause moved the end from %v to %v", before, l.PausedUntil())
	}

	l.Close()
	if err := l.Wait(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Wait after Close = %v, want ErrClosed", err)
	}
}

func TestPauseEndsAndRamps(t *testing.T) {
	ctx := context.Background()
	l, err := New(ctx, Config{RPS: 100, Burst: 10}, nil, "solo", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Pause(ctx, 30*time.Millisecond)
	if err := l.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(l.PausedUntil()) {
		t.Fatal("Wait returned during the pause")
	}
	lim, burst := l.Limit()
	if lim >= 100 || lim < 100*RampStart || burst != 1 {
		t.Fatalf("just after a pause Limit = %v, %d; want a ramp from %v with burst 1",
			lim, burst, 100*RampStart)
	}
}

func TestRepeatedPausesSlowTheRamp(t *testing.T) {
	ctx := context.Background()
	l, err := New(ctx, Config{RPS: 100, Burst: 10}, nil, "solo", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Pause(ctx, time.Millisecond)
	eventually(t, time.Second, "first pause over", func() bool { return time.Now().After(l.PausedUntil()) })
	// A second 429 during the ramp: the next ramp starts lower and lasts
	// longer.
	l.Pause(ctx, time.Millisecond)
	l.mu.Lock()
	start, ramp := l.rampStart, l.ramp
	l.mu.Unlock()
	if start != RampStart/2 || ramp != 2*RampDuration {
		t.Fatalf("after a pause during the ramp: start %v, ramp %s", start, ramp)
	}
}

func TestSharedBudget(t *testing.T) {
	bus := queuetest.Bus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := Config{RPS: 10, Burst: 10}

	a, err := newLimiter(ctx, cfg, bus.Workers, "a", zaptest.NewLogger(t), fastTiming)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Members() != 1 {
		t.Fatalf("alone: members = %d", a.Members())
	}
	b, err := newLimiter(ctx, cfg, bus.Workers, "b", zaptest.NewLogger(t), fastTiming)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	// b has read the membership before New returned.
	if b.Members() != 2 {
		t.Fatalf("b members = %d right after New, want 2", b.Members())
	}
	for name, l := range map[string]*Limiter{"a": a, "b": b} {
		eventually(t, 5*time.Second, name+" sees two members", func() bool {
			lim, burst := l.Limit()
			return l.Members() == 2 && lim == 5 && burst == 5
		})
	}

	// A third member that stops heartbeating (a crash: its key is not
	// deleted) is counted, then dropped.
	c, err := newLimiter(ctx, cfg, bus.Workers, "c", zaptest.NewLogger(t), fastTiming)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "a sees three members", func() bool {
		lim, burst := a.Limit()
		return a.Members() == 3 && lim == rate.Limit(10.0/3) && burst == 3
	})
	c.mb.stop(false)
	eventually(t, 5*time.Second, "a drops the silent member", func() bool {
		lim, _ := a.Limit()
		return a.Members() == 2 && lim == 5
	})

	// A pause in a reaches b.
	a.Pause(ctx, 5*time.Second)
	eventually(t, 5*time.Second, "b sees the pause", func() bool {
		return b.PausedUntil().Equal(a.PausedUntil())
	})
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer wcancel()
	if err := b.Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("b.Wait during a's pause = %v, want deadline exceeded", err)
	}

	// A process that starts during the pause sees it too.
	d, err := newLimiter(ctx, cfg, bus.Workers, "d", zaptest.NewLogger(t), fastTiming)
	if err != nil {
		t.Fatal(err)
	}
	if !d.PausedUntil().Equal(a.PausedUntil()) {
		t.Fatalf("new member's pause = %v, want %v", d.PausedUntil(), a.PausedUntil())
	}

	// A member that closes gives its share back at once (delete marker).
	d.Close()
	b.Close()
	eventually(t, 5*time.Second, "a alone again", func() bool {
		return a.Members() == 1
	})
}

// TestIdleMemberLeavesItsShare: a process that asks for no token gives
// its share to the busy ones, and takes it back as soon as it asks again.
func TestIdleMemberLeavesItsShare(t *testing.T) {
	bus := queuetest.Bus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tm := fastTiming
	tm.idleAfter = 200 * time.Millisecond
	cfg := Config{RPS: 1000, Burst: 10}
	a, err := newLimiter(ctx, cfg, bus.Workers, "a", zaptest.NewLogger(t), tm)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := newLimiter(ctx, cfg, bus.Workers, "b", zaptest.NewLogger(t), tm)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// a keeps asking; b asks for nothing and goes idle.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.Wait(ctx); err != nil {
				return
			}
		}
	}()
	defer func() {
		close(stop)
		<-done
	}()
	eventually(t, 5*time.Second, "a takes the whole budget", func() bool {
		lim, burst := a.Limit()
		return a.Members() == 2 && a.Busy() == 1 && lim == 1000 && burst == 10
	})
	// b's first Wait shares at once on b's side and within a heartbeat
	// round trip on a's.
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if lim, _ := b.Limit(); lim != 500 {
		t.Fatalf("b's limit right after waking = %v, want 500", lim)
	}
	eventually(t, 5*time.Second, "a shares with b again", func() bool {
		lim, burst := a.Limit()
		return a.Busy() == 2 && lim == 500 && burst == 5
	})
}

// TestWakingTogetherShares: two members idle (as every worker is while
// NATS is away), then both ask at once. Each sees the other idle, so the
// busy count alone would give each the whole budget; for a heartbeat
// after waking each takes a member's share instead.
func TestWakingTogetherShares(t *testing.T) {
	bus := queuetest.Bus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tm := fastTiming
	tm.idleAfter = 200 * time.Millisecond
	tm.heartbeat = 2 * time.Second // the settle time: longer than the checks below
	tm.ttl = 6 * time.Second
	cfg := Config{RPS: 1000, Burst: 10}
	var ls []*Limiter
	for _, id := range []string{"a", "b"} {
		l, err := newLimiter(ctx, cfg, bus.Workers, id, zaptest.NewLogger(t), tm)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls = append(ls, l)
	}
	eventually(t, 5*time.Second, "both see two members, and each the other idle", func() bool {
		for _, l := range ls {
			l.mu.Lock()
			l.applyLocked(time.Now())
			l.mu.Unlock()
			if l.Members() != 2 || l.Busy() != 1 {
				return false
			}
		}
		return true
	})
	// a wakes first: b has not announced itself busy yet, and may be
	// waking at this very moment on another host.
	if err := ls[0].Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if lim, _ := ls[0].Limit(); lim != 500 {
		t.Errorf("a right after waking, b idle: %v a second, want 500", lim)
	}
	if err := ls[1].Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for i, l := range ls {
		if lim, _ := l.Limit(); lim != 500 {
			t.Errorf("limiter %d once both woke: %v a second, want 500", i, lim)
		}
	}
}

// TestStaleViewDropsNobody: when the watcher stops delivering (NATS went
// away, or missed updates after a restart), our own heartbeats stop
// coming back too. Members heard a moment before our last echo must not
// be dropped while the view is that stale: this process would take their
// shares and send over the budget.
func TestStaleViewDropsNobody(t *testing.T) {
	l, err := newLimiter(context.Background(), Config{RPS: 30, Burst: 3}, nil, "a",
		zaptest.NewLogger(t), fastTiming)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m := &membership{l: l, id: "a", tm: fastTiming, log: l.log, seen: map[string]member{}}
	t0 := time.Now()
	m.seen["b"] = member{seen: t0}
	m.seen["c"] = member{seen: t0}
	m.seen["a"] = member{seen: t0.Add(50 * time.Millisecond)}
	m.selfSeen = t0.Add(50 * time.Millisecond)
	m.recount(t0.Add(60 * time.Millisecond))
	if l.Members() != 3 {
		t.Fatalf("members %d with a fresh view, want 3", l.Members())
	}
	// Just past the TTL for b and c, just inside it for our last echo.
	m.recount(t0.Add(fastTiming.ttl + 20*time.Millisecond))
	if l.Members() != 3 {
		t.Errorf("members %d after the watcher went quiet, want 3 (the last count)", l.Members())
	}
	// A fresh echo of our own, with still nothing from b and c: they are
	// gone.
	now := t0.Add(fastTiming.ttl + 30*time.Millisecond)
	m.selfSeen = now
	m.seen["a"] = member{seen: now}
	m.recount(now)
	if l.Members() != 1 {
		t.Errorf("members %d once our own echo is fresh and b and c stayed silent, want 1", l.Members())
	}
}
