package worker

import (
	"context"
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
}

func journalKey(jobID string, chunk int) string {
	return jobID + "." + strconv.Itoa(chunk)
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
	return ce, true, nil
}

// journalPut records the chunk as settled. It reports false when an entry
// was already there: another delivery of the job settled the chunk at the
// same time, so one of the two requests is a duplicate.
func (w *Worker) journalPut(ctx context.Context, jobID string, chunk int, ce chunkEntry) (bool, error) {
	data, err := json.Marshal(ce)
	if err != nil {
		return false, fmt.Errorf("encoding journal entry: %w", err)
	}
	_, err = w.bus.Chunks.Create(ctx, journalKey(jobID, chunk), data)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("writing journal of chunk %s: %w", journalKey(jobID, chunk), err)
	}
	return true, nil
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

// getRecord reads a request's record; ok is false when it is gone.
func (w *Worker) getRecord(ctx context.Context, requestID string) (model.RequestRecord, bool, error) {
	var rec model.RequestRecord
	e, err := w.bus.Requests.Get(ctx, requestID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("reading request record %s: %w", requestID, err)
	}
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return rec, false, fmt.Errorf("decoding request record %s: %w", requestID, err)
	}
	return rec, true, nil
}
