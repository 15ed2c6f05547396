package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Bounds of Ensure's attempts.
const (
	// EnsureTimeout bounds one Ensure when the caller's context does
	// not: long enough for a cluster to elect a meta leader.
	EnsureTimeout = 30 * time.Second
	// ensureAttemptTimeout bounds the first create-or-update request of
	// a stream; each retry gets twice as long, up to
	// ensureAttemptMaxTimeout. On a JetStream cluster, a create that
	// races another process's create of the same stream goes unanswered
	// (nats-server 2.15), so a request must not wait for the whole
	// Ensure; a loaded cluster can take longer than the first bound.
	ensureAttemptTimeout    = time.Second
	ensureAttemptMaxTimeout = 8 * time.Second
	ensureRetryWait         = 100 * time.Millisecond
	ensureRetryMaxWait      = time.Second
)

// JetStream API error codes that another attempt can clear.
const (
	// errCodeClusterNotAvailable: no meta leader yet, or lost quorum.
	errCodeClusterNotAvailable jetstream.ErrorCode = 10008
	// errCodeStreamNameInUse: another process created the stream
	// between our update (not found) and our create.
	errCodeStreamNameInUse jetstream.ErrorCode = 10058
	// errCodeReplicasNotSupported: replicas above 1 on a server that is
	// not part of a cluster.
	errCodeReplicasNotSupported jetstream.ErrorCode = 10074
	// errCodeInsufficientResources: fewer servers than replicas.
	errCodeInsufficientResources jetstream.ErrorCode = 10023
)

// retryEnsure runs op with a deadline of its own per attempt until it
// succeeds, fails for good, or ctx ends. Every process runs Ensure at
// start, so on a fresh cluster they race to create the same streams; the
// losers see a timeout or "name in use", and the next attempt's update
// finds the winner's stream.
func retryEnsure(ctx context.Context, op func(context.Context) error) error {
	wait, limit := ensureRetryWait, ensureAttemptTimeout
	for {
		actx, cancel := context.WithTimeout(ctx, limit)
		limit = min(2*limit, ensureAttemptMaxTimeout)
		err := op(actx)
		cancel()
		if err == nil || !retryableEnsure(err) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, ensureRetryMaxWait)
	}
}

func retryableEnsure(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeClusterNotAvailable, errCodeStreamNameInUse:
			return true
		}
		return apiErr.Code >= 500
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, jetstream.ErrJetStreamNotEnabled)
}

// replicasHint names TSFB_NATS_REPLICAS when the server refused the
// replica count, the usual mistake behind those errors.
func replicasHint(err error, replicas int) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeReplicasNotSupported ||
		apiErr.ErrorCode == errCodeInsufficientResources) {
		return fmt.Errorf("TSFB_NATS_REPLICAS=%d: the NATS deployment cannot hold that many replicas: %w",
			replicas, err)
	}
	return err
}

// replicasFor is the replica count Ensure asks for stream: the configured
// one, or the stream's own when it has more. Every command runs Ensure,
// and one started without TSFB_NATS_REPLICAS (the default is 1) must not
// shrink a cluster's streams to one copy; lowering is an operator's
// explicit act (nats stream edit).
func (b *Bus) replicasFor(ctx context.Context, stream string) int {
	st, err := b.JS.Stream(ctx, stream)
	if err != nil {
		return b.cfg.Replicas
	}
	have := st.CachedInfo().Config.Replicas
	if have > b.cfg.Replicas {
		if b.log != nil {
			b.log.Debug("queue_replicas_kept", zap.String("stream", stream), zap.Int("replicas", have),
				zap.Int("configured", b.cfg.Replicas))
		}
		return have
	}
	return b.cfg.Replicas
}
