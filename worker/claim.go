package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// A chunk is claimed before it is submitted, so that two deliveries of one
// job that run at the same time do not both submit it. That happens when
// JetStream redelivers a job whose worker is alive: after a NATS restart,
// for one, a job held for longer than the ack wait comes back at once,
// in-progress acks or not. The journal alone cannot stop it: it is written
// after the submit, and both deliveries read it empty before.
//
// The claim is a key beside the chunk's journal entry, naming the process
// (its key in the workers bucket) that holds it. A delivery that finds the
// chunk claimed by a live process waits for the journal entry and then
// skips the chunk. A claim is taken over when its process is gone (killed:
// its member key expires a TTL later, and has stayed away for a grace of
// another TTL, since after a NATS outage every key has expired until the
// next heartbeat), when it is this process's but none of its deliveries
// holds it (a release lost in an outage), or when it is older than
// claimMaxAge. The claim is removed once the chunk is settled, or when its
// delivery gives up on the chunk; a removal that fails, or a creation that
// reported an error but may have been stored, is redone by the fetch loop
// (retryReleases), so that a live process's leftover does not hold the
// job's delivery in another process until claimMaxAge.

// claimMaxAge bounds how long a claim holds, whoever holds it: longer than
// any submit of one chunk (its retries included) takes.
const claimMaxAge = 10 * time.Minute

// claimPoll is how often a delivery that waits on another's claim looks
// again.
const claimPoll = time.Second

// claimWaitLog: every claimWaitLog-th look at another delivery's claim is
// logged, so that a long wait shows.
const claimWaitLog = 30

// releaseTimeout bounds the removal of a claim.
const releaseTimeout = 5 * time.Second

var errClaimed = errors.New("worker: another delivery is submitting the chunk")

type claimEntry struct {
	// Owner is the claiming process's key in the workers bucket, or a
	// random one when the process has no membership.
	Owner    string `json:"owner"`
	Delivery uint64 `json:"delivery"`
}

func claimKey(jobID string, chunk int) string { return journalKey(jobID, chunk) + ".claim" }

// owner is this process's name in claims.
func (w *Worker) owner() string {
	w.ownerOnce.Do(func() {
		w.ownerKey = w.lim.MemberKey()
		if w.ownerKey == "" {
			w.ownerKey = "process-" + uuid.NewString()
		}
	})
	return w.ownerKey
}

// claim marks chunk i as being submitted by this delivery and returns the
// claim's revision; errClaimed when a live process holds it.
func (w *Worker) claim(ctx context.Context, d *delivery, i int) (uint64, error) {
	key := claimKey(d.job.JobID, i)
	val, err := json.Marshal(claimEntry{Owner: w.owner(), Delivery: d.meta.NumDelivered})
	if err != nil {
		return 0, err
	}
	rev, err := w.bus.Chunks.Create(ctx, key, val)
	if err == nil || !errors.Is(err, jetstream.ErrKeyExists) {
		if err != nil {
			// The claim may have been stored with only its reply lost:
			// the fetch loop removes it if it is there and ours.
			w.leave(key, 0)
			return 0, fmt.Errorf("claiming chunk %s: %w", key, err)
		}
		w.hold(key, true)
		return rev, nil
	}
	e, err := w.bus.Chunks.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, errClaimed // released in between: the next look takes it
	}
	if err != nil {
		return 0, fmt.Errorf("reading the claim of chunk %s: %w", key, err)
	}
	var c claimEntry
	_ = json.Unmarshal(e.Value(), &c) // an unreadable claim is a dead one
	if w.alive(ctx, key, c.Owner, e.Created()) {
		return 0, errClaimed
	}
	rev, err = w.bus.Chunks.Update(ctx, key, val, e.Revision())
	if err != nil {
		return 0, errClaimed // another delivery took it over first
	}
	w.hold(key, true)
	d.log.Warn("worker_chunk_claim_taken_over", zap.Int("chunk", i), zap.String("owner", c.Owner),
		zap.Uint64("owner_delivery", c.Delivery))
	return rev, nil
}

// hold records that a delivery of this process holds the claim key, or
// no longer does.
func (w *Worker) hold(key string, held bool) {
	w.missMu.Lock()
	defer w.missMu.Unlock()
	if !held {
		delete(w.held, key)
		return
	}
	if w.held == nil {
		w.held = map[string]bool{}
	}
	w.held[key] = true
}

// alive reports whether the owner of claim key, made at since, may still
// be submitting: a delivery of this process that holds it, or another
// process whose member key is present (or gone for less than the grace).
func (w *Worker) alive(ctx context.Context, key, owner string, since time.Time) bool {
	switch {
	case time.Since(since) > claimMaxAge:
		return false
	case owner == w.owner():
		// Ours, but no delivery holds it: left behind by a release that
		// failed, or by a claim whose reply was lost.
		w.missMu.Lock()
		defer w.missMu.Unlock()
		return w.held[key]
	case w.bus.Workers == nil || owner == "":
		return false
	}
	_, err := w.bus.Workers.Get(ctx, owner)
	w.missMu.Lock()
	defer w.missMu.Unlock()
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Gone for a whole grace period before it counts as dead: after
		// a NATS outage longer than the members' TTL every member key has
		// expired, and the live ones come back with their next heartbeat.
		if w.absent == nil {
			w.absent = map[string]time.Time{}
		}
		first, ok := w.absent[owner]
		if !ok || time.Since(first) > 2*w.claimGrace {
			// First seen missing now (a record this old is from an
			// earlier spell: the owner has been back since).
			w.absent[owner] = time.Now()
			return true
		}
		if time.Since(first) < w.claimGrace {
			return true
		}
		delete(w.absent, owner)
		return false
	}
	// Present, or unknown for now (NATS trouble): wait rather than risk a
	// second submit.
	if err == nil {
		delete(w.absent, owner)
	}
	return true
}

// release removes this delivery's claim of chunk i (rev), whatever became
// of the chunk; a claim another delivery took over stays.
func (w *Worker) release(ctx context.Context, d *delivery, i int, rev uint64) {
	w.hold(claimKey(d.job.JobID, i), false)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	key := claimKey(d.job.JobID, i)
	err := w.bus.Chunks.Delete(ctx, key, jetstream.LastRevision(rev))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		// Left behind, it would hold another process's delivery of the
		// job until claimMaxAge: the fetch loop tries again.
		d.log.Debug("worker_claim_release_failed", zap.Int("chunk", i), zap.Error(err))
		w.leave(key, rev)
	}
}

// leave records a claim this process may have left behind: at revision
// rev, or, with rev 0, one whose creation may or may not have been stored.
func (w *Worker) leave(key string, rev uint64) {
	w.missMu.Lock()
	defer w.missMu.Unlock()
	if w.unreleased == nil {
		w.unreleased = map[string]unreleased{}
	}
	w.unreleased[key] = unreleased{rev: rev, at: time.Now()}
}

// unreleased is a claim whose removal failed.
type unreleased struct {
	rev uint64
	at  time.Time
}

// retryReleases removes the claims whose release failed (in an outage, as
// a rule), so that they do not hold the job's other deliveries. A claim
// taken over since, or gone, or older than claimMaxAge is forgotten.
func (w *Worker) retryReleases(ctx context.Context) {
	w.missMu.Lock()
	todo := maps.Clone(w.unreleased)
	w.missMu.Unlock()
	for key, u := range todo {
		if time.Since(u.at) > claimMaxAge {
			w.forgetRelease(key)
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, releaseTimeout)
		rev, ok, err := w.ownLeftover(dctx, key, u.rev)
		if err == nil && !ok {
			cancel()
			w.forgetRelease(key)
			continue
		}
		if err == nil {
			err = w.bus.Chunks.Delete(dctx, key, jetstream.LastRevision(rev))
		}
		cancel()
		var apiErr *jetstream.APIError
		switch {
		case err == nil, errors.Is(err, jetstream.ErrKeyNotFound),
			errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
				apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant):
			// Released, gone, or taken over since.
			w.forgetRelease(key)
		default:
			return // NATS still away: the next round tries again
		}
	}
}

// ownLeftover returns the revision of the claim key when it is ours and no
// delivery of ours holds it: rev itself when known, else what the bucket
// has. ok is false when there is nothing of ours to remove.
func (w *Worker) ownLeftover(ctx context.Context, key string, rev uint64) (uint64, bool, error) {
	w.missMu.Lock()
	held := w.held[key]
	w.missMu.Unlock()
	if held {
		return 0, false, nil // a delivery claimed it since: it releases it
	}
	if rev != 0 {
		return rev, true, nil
	}
	e, err := w.bus.Chunks.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var c claimEntry
	if json.Unmarshal(e.Value(), &c) != nil || c.Owner != w.owner() {
		return 0, false, nil
	}
	return e.Revision(), true, nil
}

func (w *Worker) forgetRelease(key string) {
	w.missMu.Lock()
	delete(w.unreleased, key)
	w.missMu.Unlock()
}
