package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
)

// TestWaitUpToReturnsOnLongPause: a caller that cannot hold its work for
// long learns of a long pause at once, whether the pause started before
// it asked or while it waited for a token; a short pause it waits out.
func TestWaitUpToReturnsOnLongPause(t *testing.T) {
	ctx := context.Background()
	l, err := New(ctx, Config{RPS: 0.5, Burst: 1}, nil, "solo", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.WaitUpTo(ctx, time.Minute); err != nil {
		t.Fatalf("first token: %v", err)
	}

	// The next token is 2 s away; a long pause starts during the wait.
	done := make(chan error, 1)
	go func() { done <- l.WaitUpTo(ctx, time.Minute) }()
	eventually(t, 5*time.Second, "the waiter", func() bool { return l.waiters() == 1 })
	l.Pause(ctx, 10*time.Minute)
	select {
	case err := <-done:
		if !errors.Is(err, ErrLongPause) {
			t.Fatalf("WaitUpTo during a 10-minute pause: %v, want ErrLongPause", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitUpTo held on through a 10-minute pause")
	}
	// Already paused: no wait at all.
	if err := l.WaitUpTo(ctx, time.Minute); !errors.Is(err, ErrLongPause) {
		t.Fatalf("WaitUpTo in a running pause: %v, want ErrLongPause", err)
	}

	// A pause shorter than the caller's bound is waited out.
	s, err := New(ctx, Config{RPS: 1000, Burst: 1}, nil, "short", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Pause(ctx, 50*time.Millisecond)
	if err := s.WaitUpTo(ctx, time.Minute); err != nil {
		t.Fatalf("WaitUpTo through a short pause: %v", err)
	}
	if time.Now().Before(s.PausedUntil()) {
		t.Fatal("WaitUpTo returned before the short pause ended")
	}
}

func TestBudget(t *testing.T) {
	l, err := New(context.Background(), Config{RPS: 7, Burst: 3}, nil, "b", zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Budget(); got != (Config{RPS: 7, Burst: 3}) {
		t.Fatalf("Budget = %+v", got)
	}
}
