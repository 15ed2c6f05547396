package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrJobIDReused is returned by RecordJob for a job id that was published
// before with other content.
var ErrJobIDReused = errors.New("queue: job id published before with other content")

// sentSuffix marks a manifest entry written before its job's publish was
// acknowledged; AckJob removes it once the stream has the job.
const sentSuffix = " sent"

func digestOf(body []byte) string {
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// readEntry splits a manifest value into its digest and whether the job's
// publish was acknowledged (an entry without the mark is).
func readEntry(v []byte) (digest string, acked bool) {
	d, sent := strings.CutSuffix(string(v), sentSuffix)
	return d, !sent
}

// RecordJob stores a digest of a job's body under its id in the manifest
// (BucketRuns) before the job is published, and refuses an id that was
// published before with another body: inside the stream's duplicate window
// the new job would be dropped as a duplicate, and after it the workers'
// journal would refuse it, so the producer must hear it now. The same body
// again finds the same digest and passes; published says that an earlier
// publish of it was acknowledged (AckJob), so this one is a re-run, which
// the stream or the workers' journal drops. An entry whose publish was
// never acknowledged (the producer stopped first) does not count.
func RecordJob(ctx context.Context, runs jetstream.KeyValue, jobID string, body []byte) (published bool, err error) {
	digest := digestOf(body)
	_, err = runs.Create(ctx, jobID, []byte(digest+sentSuffix))
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, fmt.Errorf("recording job %s: %w", jobID, err)
	}
	return CheckJob(ctx, runs, jobID, body)
}

// AckJob marks the manifest entry of a job whose publish was acknowledged.
func AckJob(ctx context.Context, runs jetstream.KeyValue, jobID string, body []byte) error {
	if _, err := runs.Put(ctx, jobID, []byte(digestOf(body))); err != nil {
		return fmt.Errorf("marking job %s published: %w", jobID, err)
	}
	return nil
}

// CheckJob is RecordJob without the write, for a dry run: it reports
// whether the job id was published before with the same content, and
// ErrJobIDReused when it was recorded with other content.
func CheckJob(ctx context.Context, runs jetstream.KeyValue, jobID string, body []byte) (bool, error) {
	e, err := runs.Get(ctx, jobID)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("reading the record of job %s: %w", jobID, err)
	}
	digest, acked := readEntry(e.Value())
	if digest != digestOf(body) {
		return false, fmt.Errorf("%w: %s", ErrJobIDReused, jobID)
	}
	return acked, nil
}
