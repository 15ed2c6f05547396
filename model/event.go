package model

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// Result event types, published on fallback.results.<account>.<jobId>.
const (
	EventJobAccepted      = "job.accepted"
	EventJobRejected      = "job.rejected"
	EventJobFailed        = "job.failed"
	EventRequestSubmitted = "request.submitted"
	EventDeviceSucceeded  = "device.succeeded"
	EventDeviceFailed     = "device.failed"
	EventDeviceTimedOut   = "device.timed_out"
	EventDeviceUnmatched  = "device.unmatched"
	EventDeviceStatus     = "device.status"
	EventJobCompleted     = "job.completed"
)

// UnknownJobID names the job of events that belong to no known job, such as
// device.unmatched, so that they still have a subject.
const UnknownJobID = "_unmatched"

// Fault is the reason of a failure, from ThingSpace or from tsfallback.
type Fault struct {
	Code    string `json:"code"`
	Message string `json:"message,omitempty"`
}

// Counts are the outcomes of a job's devices, carried by job.completed.
type Counts struct {
	Devices   int `json:"devices"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	TimedOut  int `json:"timedOut"`
}

// Final reports whether every device has an outcome.
func (c Counts) Final() bool {
	return c.Devices > 0 && c.Succeeded+c.Failed+c.TimedOut >= c.Devices
}

// Event is one result event.
type Event struct {
	Type        string    `json:"type"`
	JobID       string    `json:"jobId"`
	AccountName string    `json:"accountName"`
	At          time.Time `json:"at"`
	RequestID   string    `json:"requestId,omitempty"`
	// Device is the device of a device.* event.
	Device *Device `json:"device,omitempty"`
	// Devices are the devices of a request.submitted event.
	Devices []Device `json:"devices,omitempty"`
	// Status is ThingSpace's status word of a device.* event.
	Status   string    `json:"status,omitempty"`
	Fault    *Fault    `json:"fault,omitempty"`
	Counts   *Counts   `json:"counts,omitempty"`
	Problems []Problem `json:"problems,omitempty"`
	// PossibleDuplicate marks a request that was sent again after an
	// ambiguous failure, so ThingSpace may have executed it twice.
	PossibleDuplicate bool `json:"possibleDuplicate,omitempty"`
}

// MsgID derives the event's Nats-Msg-Id from what makes it unique, so that
// a redelivered callback or a repeated publish yields the same id.
func (e Event) MsgID() string {
	parts := []string{e.Type, e.JobID, e.RequestID}
	if e.Device != nil {
		parts = append(parts, e.Device.Key())
	}
	if e.Type == EventDeviceStatus {
		parts = append(parts, strings.ToUpper(e.Status))
	}
	sum := sha256.Sum256([]byte(strings.Join(parts, "|")))
	return e.Type + "-" + hex.EncodeToString(sum[:12])
}

// IsFinalDevice reports whether the event type ends a device.
func IsFinalDevice(typ string) bool {
	switch typ {
	case EventDeviceSucceeded, EventDeviceFailed, EventDeviceTimedOut:
		return true
	}
	return false
}
