package progress

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsfallback/tsfallback/model"
)

// HasOutcome reports whether the device of e (within e's job) already
// has a final outcome. The correlator asks before it publishes a non-final
// status, so that a status ThingSpace sent, or we received, after the final
// callback does not make a finished device look unfinished again.
func (t *Tracker) HasOutcome(ctx context.Context, e model.Event) (bool, error) {
	if e.Device == nil {
		return false, nil
	}
	_, err := t.bus.Outcomes.Get(ctx, outcomeKey(&e))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("reading the outcome of %s: %w", outcomeKey(&e), err)
	}
}
