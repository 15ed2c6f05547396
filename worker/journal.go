package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsfallback/tsfallback/model"
)

// chunkEntry is the submit journal's record of a settled chunk, stored in
// the chunks bucket under "<jobId>.<chunk>".
type chunkEntry struct {
	// RequestID is ThingSpace's id of the accepted request.
	RequestID string `json:"requestId,omitempty"`
	// Fault is set when ThingSpace refused the chunk for good.
	Fault   *model.Fault `json:"fault,omitempty"`
	Devices int          `json:"devices"`
	// PossibleDuplicate: the request was sent again after an ambiguous
	// failure.
	PossibleDuplicate bool      `json:"possibleDuplicate,omitempty"`
	At                time.Time `json:"at"`
	// Digest identifies the chunk's devices (see digest), so that a job id
	// reused for other devices is told from a redelivery. Entries written
	// before it existed have none and are taken as matching.
	Digest string `json:"digest,omitempty"`
	// Published is set once request.submitted is stored for RequestID.
	// Without it a redelivery must find out whether the event went out
	// (see publishOnce).
	Published bool `json:"published,omitempty"`

	// rev is the stored entry's revision, set by journalGet and
	// journalPut; created is its server time, set by journalGet (zero for
	// an entry this delivery wrote: see publishOnce).
	rev     uint64
	created time.Time
}

func journalKey(jobID string, chunk int) string {
	return jobID + "." + strconv.Itoa(chunk)
}

// acceptKey is the key of the job's acceptance record. Chunk keys end in a
// number, so it never collides with one, and all of a job's keys share the
// prefix "<jobId>.".
func acceptKey(jobID string) string { return jobID + ".accepted" }

// acceptEntry is the record of an accepted job, created before the job's
// first request, in the chunks bucket under acceptKey.
type acceptEntry struct {
	// Digest identifies all the job's devices, in order.
	Digest  string `json:"digest"`
	Devices int    `json:"devices"`
	// Published is set once job.accepted is stored.
	Published bool      `json:"published,omitempty"`
	At        time.Time `json:"at"`

	rev     uint64
	created time.Time
}

// digest identifies a run of devices by their keys, in order: the same
// devices in another order make other chunks, so they count as others.
func digest(devs []model.Device) string {
	h := sha256.New()
	for i := range devs {
		h.Write([]byte(devs[i].Key()))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// acceptGet returns the job's acceptance record and whether there is one.
func (w *Worker) acceptGet(ctx context.Context, jobID string) (acceptEntry, bool, error) {
	var ae acceptEntry
	e, err := w.bus.Chunks.Get(ctx, acceptKey(jobID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ae, false, nil
	}
	if err != nil {
		return ae, false, fmt.Errorf("reading acceptance of job %s: %w", jobID, err)
	}
	if err := json.Unmarshal(e.Value(), &ae); err != nil {
		return ae, false, fmt.Errorf("decoding acceptance of job %s: %w", jobID, err)
	}
	ae.rev, ae.created = e.Revision(), e.Created()
	return ae, true, nil
}

// acceptCreate stores the job's acceptance record unless one exists, and
// returns the one that stands.
func (w *Worker) acceptCreate(ctx context.Context, jobID string, ae acceptEntry) (acceptEntry, error) {
	data, err := json.Marshal(ae)
	if err != nil {
		return ae, fmt.Errorf("encoding acceptance: %w", err)
	}
	rev, err := w.bus.Chunks.Create(ctx, acceptKey(jobID), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Another delivery of a job with this id got there first.
		stored, ok, err := w.acceptGet(ctx, jobID)
		if err == nil && !ok {
			err = fmt.Errorf("acceptance of job %s vanished", jobID)
		}
		return stored, err
	}
	if err != nil {
		return ae, fmt.Errorf("storing acceptance of job %s: %w", jobID, err)
	}
	// created stays zero: nothing of this job was published before the
	// record existed.
	ae.rev = rev
	return ae, nil
}

// markPublished sets Published on a stored entry at revision rev. It is
// an optimisation, not a guarantee: when it fails, the next delivery looks
// for the event before publishing it again, so the error is only logged.
func (w *Worker) markPublished(ctx context.Context, key string, rev uint64, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s: %w", key, err)
	}
	if _, err := w.bus.Chunks.Update(ctx, key, data, rev); err != nil &&
		!errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("marking %s published: %w", key, err)
	}
	// A revision mismatch means another delivery changed the entry: it
	// marks it itself.
	return nil
}

// journalGet returns the chunk's entry and whether there is one.
func (w *Worker) journalGet(ctx context.Context, jobID string, chunk int) (chunkEntry, bool, error) {
	var ce chunkEntry
	e, err := w.bus.Chunks.Get(ctx, journalKey(jobID, chunk))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ce, false, nil
	}
	if err != nil {
		return ce, false, fmt.Errorf("reading journal of chunk %s: %w", journalKey(jobID, chunk), err)
	}
	if err := json.Unmarshal(e.Value(), &ce); err != nil {
		return ce, false, fmt.Errorf("decoding journal of chunk %s: %w", journalKey(jobID, chunk), err)
	}
	ce.rev, ce.created = e.Revision(), e.Created()
	return ce, true, nil
}

// journalPut records the chunk as settled and returns the entry's
// revision. The revision is 0 when another delivery's entry was already
// there: it settled the chunk at the same time, so one of the two requests
// is a duplicate. An entry with this one's request id is this one's, from
// an earlier try whose reply was lost: its revision is returned.
func (w *Worker) journalPut(ctx context.Context, jobID string, chunk int, ce chunkEntry) (uint64, error) {
	data, err := json.Marshal(ce)
	if err != nil {
		return 0, fmt.Errorf("encoding journal entry: %w", err)
	}
	key := journalKey(jobID, chunk)
	rev, err := w.bus.Chunks.Create(ctx, key, data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Another delivery wrote it first, or an earlier try of this
		// very write was stored and only its reply was lost (persist
		// retries it): the entry tells which, by its request id.
		e, gerr := w.bus.Chunks.Get(ctx, key)
		if gerr != nil {
			return 0, fmt.Errorf("reading journal of chunk %s: %w", key, gerr)
		}
		var prev chunkEntry
		if json.Unmarshal(e.Value(), &prev) == nil && ce.RequestID != "" && prev.RequestID == ce.RequestID {
			return e.Revision(), nil
		}
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("writing journal of chunk %s: %w", key, err)
	}
	return rev, nil
}

// putRecord stores the request's record for the correlator.
func (w *Worker) putRecord(ctx context.Context, rec model.RequestRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encoding request record: %w", err)
	}
	if _, err := w.bus.Requests.Put(ctx, rec.RequestID, data); err != nil {
		return fmt.Errorf("storing request record %s: %w", rec.RequestID, err)
	}
	return nil
}
