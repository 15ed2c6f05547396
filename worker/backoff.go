package worker

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoffPolicy holds the retry waits.
type backoffPolicy struct {
	// base and cap bound the wait between two tries of one request.
	base, cap time.Duration
	// attempts is how many transient failures of one request are retried
	// within one delivery before the job is handed back for later.
	attempts int
	// redeliverBase and redeliverCap bound the delay of a job handed back.
	redeliverBase, redeliverCap time.Duration
	// persistAttempt bounds one try of the writes after a submit (see
	// Worker.persist): a reply lost with a failed-over NATS node would
	// otherwise hold the try, and the job with it, until persistDeadline.
	persistAttempt time.Duration
}

var defaultBackoff = backoffPolicy{
	base:          500 * time.Millisecond,
	cap:           30 * time.Second,
	attempts:      5,
	redeliverBase: 5 * time.Second,
	redeliverCap:  5 * time.Minute,
	// As long as JetStream's own default request timeout.
	persistAttempt: 5 * time.Second,
}

// retry returns the wait before try number attempt+1 (attempt >= 1).
func (b backoffPolicy) retry(attempt int) time.Duration {
	return jitter(expo(b.base, b.cap, attempt))
}

// redelivery returns the delay of a job handed back after its delivery
// number n.
func (b backoffPolicy) redelivery(n int) time.Duration {
	return jitter(expo(b.redeliverBase, b.redeliverCap, n))
}

func expo(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// jitter spreads waits over [d/2, d), so that workers that failed together
// do not retry together.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(half)
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
