package progress

import (
	"context"
	"time"

	"github.com/tsfallback/tsfallback/model"
)

// MayPublish reports whether publishing e now cannot put a second copy of
// it in FALLBACK_RESULTS, for a caller that may have published it before,
// no earlier than attempted, and could not record that it did (it crashed,
// or the record failed). It is true while the stream's duplicate window
// still covers attempted, since the stream then drops a repeat, and after
// that only when e is not found among its job's events stored since
// attempted.
func (t *Tracker) MayPublish(ctx context.Context, e model.Event, attempted time.Time) (bool, error) {
	if !t.mustLookBeforeRepublish(ctx, attempted) {
		return true, nil
	}
	found, err := t.published(ctx, &e, attempted)
	if err != nil {
		return false, err
	}
	return !found, nil
}
