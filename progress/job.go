package progress

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/tsfallback/tsfallback/model"
)

// ErrJobNotFound is returned by Get for a job with no progress record.
var ErrJobNotFound = errors.New("progress: job not found")

// JobState is a job's progress as stored in the jobs bucket and returned by
// Get and the status endpoint.
type JobState struct {
	JobID       string `json:"jobId"`
	AccountName string `json:"accountName"`
	ReplyTo     string `json:"replyTo,omitempty"`
	// Counts.Devices is the number of distinct devices of the job; zero
	// while the job is known only from outcomes that came before StartJob.
	Counts model.Counts `json:"counts"`
	// Completed is set in the same update that counts the last device.
	Completed bool `json:"completed"`
	// CompletedPublished is set once job.completed has been stored.
	CompletedPublished bool      `json:"completedPublished,omitempty"`
	StartedAt          time.Time `json:"startedAt"`
	UpdatedAt          time.Time `json:"updatedAt"`
	CompletedAt        time.Time `json:"completedAt,omitzero"`
}

// Pending is the number of devices still without a final outcome.
func (s JobState) Pending() int {
	n := s.Counts.Devices - s.Counts.Succeeded - s.Counts.Failed - s.Counts.TimedOut
	return max(n, 0)
}

// jobRecord is the stored form: the state plus the set of devices already
// counted, which makes applying a batch idempotent whatever the batch holds.
type jobRecord struct {
	JobState
	// Counted holds an 8-byte hash of the key of every counted device,
	// base64-encoded. Limitation: about 11 bytes per device, so a job of
	// 10,000 devices carries a 110 kB record; fine below the 1 MB message
	// limit, and every update of the job rewrites it.
	Counted string `json:"counted,omitempty"`

	counted map[uint64]bool
}

func decodeJob(data []byte) (*jobRecord, error) {
	var r jobRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("decoding job record: %w", err)
	}
	raw, err := base64.StdEncoding.DecodeString(r.Counted)
	if err != nil || len(raw)%8 != 0 {
		return nil, fmt.Errorf("decoding counted devices of job %s: bad encoding", r.JobID)
	}
	r.counted = make(map[uint64]bool, len(raw)/8)
	for i := 0; i < len(raw); i += 8 {
		r.counted[binary.BigEndian.Uint64(raw[i:])] = true
	}
	return &r, nil
}

func (r *jobRecord) encode() ([]byte, error) {
	raw := make([]byte, 0, 8*len(r.counted))
	for h := range r.counted {
		raw = binary.BigEndian.AppendUint64(raw, h)
	}
	r.Counted = base64.StdEncoding.EncodeToString(raw)
	return json.Marshal(r)
}

func keyHash(devKey string) uint64 {
	sum := sha256.Sum256([]byte(devKey))
	return binary.BigEndian.Uint64(sum[:8])
}

// count applies one device's outcome unless the device is already counted.
func (r *jobRecord) count(devKey, typ string) bool {
	h := keyHash(devKey)
	if r.counted[h] {
		return false
	}
	r.counted[h] = true
	switch typ {
	case model.EventDeviceSucceeded:
		r.Counts.Succeeded++
	case model.EventDeviceFailed:
		r.Counts.Failed++
	default:
		r.Counts.TimedOut++
	}
	return true
}

// settle marks the job completed when every device has an outcome.
func (r *jobRecord) settle(now time.Time) bool {
	if r.Completed || !r.Counts.Final() {
		return false
	}
	r.Completed = true
	r.CompletedAt = now
	return true
}
