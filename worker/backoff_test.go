package worker

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"
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
