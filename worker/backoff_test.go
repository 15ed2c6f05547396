package worker

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/queue/queuetest"
)

// TestPersistAttemptBounded: a write whose reply never comes (as when it
// is lost with a failed-over NATS node) is given up after persistAttempt
// and tried again, instead of holding the job until persistDeadline.
func TestPersistAttemptBounded(t *testing.T) {
	w := &Worker{backoff: fastBackoff, kick: make(chan struct{}, 1)}
	w.backoff.persistAttempt = 50 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), persistDeadline)
	defer cancel()
	tries := 0
	start := time.Now()
	err := w.persist(ctx, zap.NewNop(), func(ctx context.Context) error {
		tries++
		if tries == 1 {
			<-ctx.Done() // the lost reply
			return ctx.Err()
		}
		return nil
	})
	if err != nil || tries != 2 {
		t.Fatalf("persist: %v after %d tries, want success on the second", err, tries)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("persist took %s", d)
	}
}

// TestJournalRetryIsNotADuplicate: a journal write retried after its reply
// was lost finds its own entry, which is not another delivery's: it keeps
// the entry's revision, and only another request id counts as a second
// submission.
func TestJournalRetryIsNotADuplicate(t *testing.T) {
	h := struct{ w *Worker }{&Worker{bus: queuetest.Bus(t)}}
	ctx := context.Background()
	ce := chunkEntry{RequestID: "11111111-2222-3333-4444-555555555555", Devices: 3}
	rev, err := h.w.journalPut(ctx, "job-j", 0, ce)
	if err != nil || rev == 0 {
		t.Fatalf("first write: rev %d, %v", rev, err)
	}
	again, err := h.w.journalPut(ctx, "job-j", 0, ce)
	if err != nil || again != rev {
		t.Errorf("the same write again: rev %d, %v; want %d", again, err, rev)
	}
	other := ce
	other.RequestID = "99999999-2222-3333-4444-555555555555"
	if r, err := h.w.journalPut(ctx, "job-j", 0, other); err != nil || r != 0 {
		t.Errorf("another request for the chunk: rev %d, %v; want 0", r, err)
	}
}
