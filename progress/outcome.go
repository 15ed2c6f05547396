package progress

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

// ErrInvalidOutcome is returned (wrapped) for an outcome that can never be
// recorded: no job, no device, or an event type that is not final.
var ErrInvalidOutcome = errors.New("progress: invalid outcome")

// Sources of outcomes that do not come from a callback stream message.
const (
	SourceWorker  = "worker"
	SourceSweeper = "sweeper"
)

// Outcome is one device's final outcome.
type Outcome struct {
	// Event is the device.succeeded, device.failed or device.timed_out
	// event, with JobID, AccountName, Device and, when known, RequestID.
	Event model.Event
	// ReplyTo also receives the event when not empty.
	ReplyTo string
	// Source names what produced the outcome, stable across redeliveries:
	// the callback stream sequence, "worker" or "sweeper". A second outcome
	// for the same key with the same Source is a redelivery of unfinished
	// work; with another Source it is a resend and is skipped.
	Source string
}

// outcomeRecord is the value stored in the outcomes bucket.
type outcomeRecord struct {
	Source  string      `json:"source"`
	ReplyTo string      `json:"replyTo,omitempty"`
	Event   model.Event `json:"event"`
}

// safeToken returns s when it is usable inside a KV key, else a hash of it,
// so that an odd identifier cannot make the key invalid.
func safeToken(s string) string {
	if queue.ValidKey(s) {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h-" + hex.EncodeToString(sum[:16])
}

// deviceKey is the device's identity within a job.
func deviceKey(d *model.Device) string {
	return safeToken(d.Key())
}

// outcomeKey is "<jobId>.<deviceKey>": one final outcome per device of a
// job, whichever request it came through. A chunk submitted twice (a crash
// between ThingSpace's answer and the journal, or a resend after an
// ambiguous failure) brings callbacks under two request ids; keyed by
// request, both would publish a final event for the same device. The first
// outcome stored is the device's; later ones are resends and are skipped.
// Job ids are subject tokens ([A-Za-z0-9_-]), so the key is a valid KV key.
func outcomeKey(e *model.Event) string {
	return safeToken(e.JobID) + "." + deviceKey(e.Device)
}

func validate(o *Outcome) error {
	e := &o.Event
	switch {
	case !model.IsFinalDevice(e.Type):
		return fmt.Errorf("%w: event type %q is not a final device outcome", ErrInvalidOutcome, e.Type)
	case model.ValidateJobID(e.JobID) != nil:
		return fmt.Errorf("%w: job id %q", ErrInvalidOutcome, e.JobID)
	case e.Device == nil || len(e.Device.DeviceIDs) == 0:
		return fmt.Errorf("%w: no device", ErrInvalidOutcome)
	case e.AccountName == "":
		return fmt.Errorf("%w: no account name", ErrInvalidOutcome)
	case o.Source == "":
		return fmt.Errorf("%w: no source", ErrInvalidOutcome)
	}
	return nil
}
