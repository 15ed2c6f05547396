package queue

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrJobIDReused is returned by RecordJob for a job id that was published
// before with other content.
var ErrJobIDReused = errors.New("queue: job id published before with other content")

// RecordJob stores a digest of a job's body under its id in the manifest
// (BucketRuns) before the job is published, and refuses an id that was
// published before with another body: inside the stream's duplicate window
// the new job would be dropped as a duplicate, and after it the workers'
// journal would refuse it, so the producer must hear it now. The same body
// again finds the same digest and passes, reporting that it was recorded
// before: a re-run, which the stream or the workers' journal drops.
func RecordJob(ctx context.Context, runs jetstream.KeyValue, jobID string, body []byte) (bool, error) {
	sum := sha256.Sum256(body)
	digest := []byte(hex.EncodeToString(sum[:]))
	_, err := runs.Create(ctx, jobID, digest)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("recording job %s: %w", jobID, err)
	}
	e, err := runs.Get(ctx, jobID)
	if err != nil {
		return false, fmt.Errorf("reading the record of job %s: %w", jobID, err)
	}
	if !bytes.Equal(e.Value(), digest) {
		return false, fmt.Errorf("%w: %s", ErrJobIDReused, jobID)
	}
	return true, nil
}

// CheckJob is RecordJob without the write, for a dry run: it reports
// whether the job id was recorded before with the same content, and
// ErrJobIDReused when it was recorded with other content.
func CheckJob(ctx context.Context, runs jetstream.KeyValue, jobID string, body []byte) (bool, error) {
	sum := sha256.Sum256(body)
	e, err := runs.Get(ctx, jobID)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading the record of job %s: %w", jobID, err)
	case !bytes.Equal(e.Value(), []byte(hex.EncodeToString(sum[:]))):
		return false, fmt.Errorf("%w: %s", ErrJobIDReused, jobID)
	}
	return true, nil
}
