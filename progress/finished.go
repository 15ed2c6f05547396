package progress

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/tsfallback/tsfallback/model"
)

// HasOutcomes reports, for each event, whether its device (within the
// event's job) already has a final outcome; an event without a device has
// none. The correlator asks before it publishes non-final statuses, so that
// a status ThingSpace sent, or we received, after the final callback does
// not make a finished device look unfinished again; the sweeper asks which
// devices of an overdue request are still open. Up to Parallelism reads are
// in flight, so that the devices of a whole request cost about one round
// trip rather than one each. The error is the first read that failed.
func (t *Tracker) HasOutcomes(ctx context.Context, events []model.Event) ([]bool, error) {
	done := make([]bool, len(events))
	var g errgroup.Group
	g.SetLimit(Parallelism)
	for i := range events {
		if events[i].Device == nil {
			continue
		}
		g.Go(func() error {
			_, err := t.bus.Outcomes.Get(ctx, outcomeKey(&events[i]))
			var ferr error
			done[i], ferr = found(events[i], err)
			return ferr
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return done, nil
}

func found(e model.Event, err error) (bool, error) {
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("reading the outcome of %s: %w", outcomeKey(&e), err)
	}
}
