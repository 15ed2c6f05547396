package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Job limits used when the caller has no configuration of its own.
const (
	DefaultMaxJobDevices = 1000
	// MaxDeviceIDs bounds the identifiers of one device: one per kind.
	MaxDeviceIDs = 3
)

// Job is the message producers publish on fallback.jobs.<accountName>.
type Job struct {
	JobID       string   `json:"jobId,omitempty"`
	AccountName string   `json:"accountName"`
	Devices     []Device `json:"devices"`
	ReplyTo     string   `json:"replyTo,omitempty"`
}

// Problem is one reason a job is invalid. Device is the index of the device
// in the job, or -1 for a job-level problem.
type Problem struct {
	Device int    `json:"device"`
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

func (p Problem) String() string {
	if p.Device < 0 {
		return fmt.Sprintf("%s: %s", p.Field, p.Reason)
	}
	return fmt.Sprintf("devices[%d].%s: %s", p.Device, p.Field, p.Reason)
}

// InvalidJobError lists every problem found in a job.
type InvalidJobError struct {
	Problems []Problem
}

// ErrInvalidJob is matched by errors.Is for every *InvalidJobError.
var ErrInvalidJob = errors.New("model: invalid job")

func (e *InvalidJobError) Error() string {
	var b strings.Builder
	b.WriteString("model: invalid job: ")
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		if i == 10 {
			fmt.Fprintf(&b, "and %d more", len(e.Problems)-10)
			break
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrInvalidJob) true.
func (e *InvalidJobError) Is(target error) bool { return target == ErrInvalidJob }

// DecodeJob decodes and validates a job message. Unknown fields are refused
// so that a misspelt "replyTo" does not go unnoticed. The returned error is
// an *InvalidJobError naming every problem; the job is returned as far as it
// decoded, so the caller can still name its id and account.
func DecodeJob(data []byte, maxDevices int) (Job, error) {
	var j Job
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return j, bodyProblem(j, jsonReason(err))
	}
	if dec.More() {
		return j, bodyProblem(j, "trailing data after the JSON object")
	}
	return j, j.Validate(maxDevices)
}

// bodyProblem reports an undecodable body. The job id and reply subject
// are checked as far as they decoded, because callers name the rejection
// event's subject after the one and send it to the other, and must know
// when they cannot.
func bodyProblem(j Job, why string) error {
	ps := []Problem{{Device: -1, Field: "body", Reason: why}}
	if j.JobID != "" {
		if err := ValidateJobID(j.JobID); err != nil {
			ps = append(ps, Problem{Device: -1, Field: "jobId", Reason: reason(err)})
		}
	}
	if j.ReplyTo != "" {
		if err := validateReplyTo(j.ReplyTo); err != nil {
			ps = append(ps, Problem{Device: -1, Field: "replyTo", Reason: reason(err)})
		}
	}
	return &InvalidJobError{Problems: ps}
}

func jsonReason(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "empty body: want a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: the body ends before the object does"
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, err)
	case errors.As(err, &typ):
		return fmt.Sprintf("field %q: wrong JSON type %s, want %s", typ.Field, typ.Value, typ.Type)
	default:
		return "cannot decode JSON: " + err.Error()
	}
}

// Validate checks the whole job and returns an *InvalidJobError naming
// every problem, or nil. maxDevices <= 0 means DefaultMaxJobDevices.
func (j *Job) Validate(maxDevices int) error {
	if maxDevices <= 0 {
		maxDevices = DefaultMaxJobDevices
	}
	var ps []Problem
	add := func(dev int, field, reason string) {
		ps = append(ps, Problem{Device: dev, Field: field, Reason: reason})
	}
	if j.JobID != "" {
		if err := ValidateJobID(j.JobID); err != nil {
			add(-1, "jobId", reason(err))
		}
	}
	if err := ValidateAccountName(j.AccountName); err != nil {
		add(-1, "accountName", reason(err))
	}
	if j.ReplyTo != "" {
		if err := validateReplyTo(j.ReplyTo); err != nil {
			add(-1, "replyTo", reason(err))
		}
	}
	switch {
	case len(j.Devices) == 0:
		add(-1, "devices", "no devices")
	case len(j.Devices) > maxDevices:
		add(-1, "devices", fmt.Sprintf("%d devices, at most %d per job", len(j.Devices), maxDevices))
	}
	// A device named twice, or two devices sharing an identifier, would
	// make one callback match either: the second would never finish.
	first := map[DeviceID]int{}
	for i, d := range j.Devices {
		ps = append(ps, validateDevice(i, d)...)
		for k, id := range d.DeviceIDs {
			if id.ID == "" {
				continue
			}
			if prev, seen := first[id]; seen && prev != i {
				ps = append(ps, Problem{Device: i, Field: fmt.Sprintf("deviceIds[%d](%s)", k, id.Kind),
					Reason: fmt.Sprintf("also in devices[%d]: each device once per job", prev)})
				continue
			}
			first[id] = i
		}
	}
	if len(ps) > 0 {
		return &InvalidJobError{Problems: ps}
	}
	return nil
}

func validateDevice(i int, d Device) []Problem {
	var ps []Problem
	if len(d.DeviceIDs) == 0 {
		return []Problem{{Device: i, Field: "deviceIds", Reason: "no identifiers"}}
	}
	if len(d.DeviceIDs) > MaxDeviceIDs {
		ps = append(ps, Problem{Device: i, Field: "deviceIds",
			Reason: fmt.Sprintf("%d identifiers, at most one per kind", len(d.DeviceIDs))})
	}
	seen := map[string]bool{}
	for k, id := range d.DeviceIDs {
		field := fmt.Sprintf("deviceIds[%d]", k)
		if id.Kind != "" {
			field += "(" + id.Kind + ")"
		}
		if seen[id.Kind] {
			ps = append(ps, Problem{Device: i, Field: field, Reason: "kind given twice"})
			continue
		}
		seen[id.Kind] = true
		if err := ValidateDeviceID(id); err != nil {
			ps = append(ps, Problem{Device: i, Field: field, Reason: reason(err)})
		}
	}
	return ps
}

// reason drops the package prefix from an error text, for problem lists.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), "model: ")
}

// ErrReplyTo is matched by every invalid reply subject.
var ErrReplyTo = errors.New("model: invalid reply subject")

// ValidateReplySubject checks a job's replyTo: a plain NATS subject (no
// wildcards, no empty tokens or spaces) outside tsfallback's own subjects
// ("fallback.") and the server's ("$"), so that a job's events can never be
// fed back into the job queue, the callback stream or the JetStream API.
func ValidateReplySubject(s string) error { return validateReplyTo(s) }

func validateReplyTo(s string) error {
	switch {
	case !validSubject(s):
		return fmt.Errorf("%w: %q is not a valid NATS subject", ErrReplyTo, s)
	case strings.ContainsAny(s, "*>"):
		return fmt.Errorf("%w: %q has a wildcard", ErrReplyTo, s)
	case strings.HasPrefix(s, "fallback.") || s == "fallback":
		return fmt.Errorf("%w: %q is one of tsfallback's own subjects", ErrReplyTo, s)
	case strings.HasPrefix(s, "$"):
		return fmt.Errorf("%w: %q is a NATS system subject", ErrReplyTo, s)
	}
	return nil
}

func validSubject(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			return false
		}
	}
	return true
}
