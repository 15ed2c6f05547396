package importer

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Exit codes of `tsfallback import`.
const (
	ExitOK       = 0 // every row was published
	ExitRejected = 1 // some rows were rejected; the good ones were published
	ExitFatal    = 2 // usage or fatal error
)

// Result sums up a run. After a fatal error it holds what was done up to
// the error: Devices and Jobs count only acknowledged publishes.
type Result struct {
	RunID  string `json:"runId"`
	DryRun bool   `json:"dryRun,omitempty"`
	Files  int    `json:"files"`
	// Rows counts data rows: not the header, blank or comment rows.
	Rows int `json:"rows"`
	// Devices and Jobs were published and acknowledged (in a dry run:
	// would have been published).
	Devices int `json:"devices"`
	Jobs    int `json:"jobs"`
	// JobsAlreadyPublished, among Jobs, were published before by an
	// earlier run with the run id (the manifest has them, or the stream
	// took them as duplicates): a re-run, which submits nothing twice.
	JobsAlreadyPublished int `json:"jobsAlreadyPublished"`
	// Rejected counts rejected rows; Rejections counts their problems by
	// reason code (a row may have several).
	Rejected   int            `json:"rejected"`
	Rejections map[string]int `json:"rejectedByReason,omitempty"`
	// Duplicates counts rows whose device was already accepted.
	Duplicates int     `json:"duplicates"`
	FirstJobID string  `json:"firstJobId,omitempty"`
	LastJobID  string  `json:"lastJobId,omitempty"`
	Seconds    float64 `json:"seconds"`
	// JobsUnconfirmed were sent without their ack arriving before a fatal
	// error ended the run: they may or may not be in the stream (a re-run
	// with the run id settles it). DevicesUnconfirmed are their devices.
	JobsUnconfirmed    int `json:"jobsUnconfirmed,omitempty"`
	DevicesUnconfirmed int `json:"devicesUnconfirmed,omitempty"`
	// DevicesNotSent were accepted but their job was not published before
	// a fatal error ended the run: rows = Devices + DevicesUnconfirmed +
	// DevicesNotSent + Rejected + Duplicates then.
	DevicesNotSent int `json:"devicesNotSent,omitempty"`
	// DedupSpilledBytes is what the duplicate check wrote to its
	// temporary file after it filled its memory budget.
	DedupSpilledBytes int64 `json:"dedupSpilledBytes,omitempty"`
}

// ExitCode maps a run's outcome to the command's exit status.
func ExitCode(r Result, err error) int {
	switch {
	case err != nil:
		return ExitFatal
	case r.Rejected > 0:
		return ExitRejected
	}
	return ExitOK
}

// WriteSummary prints the result for people.
func (r Result) WriteSummary(w io.Writer) error {
	var b strings.Builder
	verb := "published"
	if r.DryRun {
		verb = "would publish (dry run)"
	}
	fmt.Fprintf(&b, "run id:      %s\n", r.RunID)
	fmt.Fprintf(&b, "rows:        %d in %d file(s)\n", r.Rows, r.Files)
	fmt.Fprintf(&b, "%-12s %s in %s", verb+":", plural(r.Devices, "device"), plural(r.Jobs, "job"))
	if r.FirstJobID != "" {
		fmt.Fprintf(&b, " (%s .. %s)", r.FirstJobID, r.LastJobID)
	}
	b.WriteString("\n")
	if r.DevicesNotSent > 0 {
		fmt.Fprintf(&b, "not sent:    %s (accepted, but the run stopped before their jobs went out; "+
			"a re-run with the run id sends them)\n", plural(r.DevicesNotSent, "device"))
	}
	if r.JobsUnconfirmed > 0 {
		fmt.Fprintf(&b, "unconfirmed: %s (%s) sent, their ack not received: they may be in "+
			"the stream; re-run with the run id to settle it\n", plural(r.JobsUnconfirmed, "job"),
			plural(r.DevicesUnconfirmed, "device"))
	}
	if r.JobsAlreadyPublished > 0 {
		fmt.Fprintf(&b, "published before: %d of these jobs (by an earlier run with this run id; "+
			"nothing is submitted twice)\n", r.JobsAlreadyPublished)
	}
	fmt.Fprintf(&b, "rejected:    %d rows\n", r.Rejected)
	codes := make([]string, 0, len(r.Rejections))
	for c := range r.Rejections {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	for _, c := range codes {
		fmt.Fprintf(&b, "  %-26s %d\n", c, r.Rejections[c])
	}
	fmt.Fprintf(&b, "duplicates:  %d rows (not published again)\n", r.Duplicates)
	if r.DedupSpilledBytes > 0 {
		fmt.Fprintf(&b, "duplicate check: %.1f MB on disk past its memory budget "+
			"(TSFB_IMPORT_DEDUP_MEMORY_MB)\n", float64(r.DedupSpilledBytes)/1e6)
	}
	rate := 0.0
	if r.Seconds > 0 {
		rate = float64(r.Rows) / r.Seconds
	}
	fmt.Fprintf(&b, "seconds:     %.2f (%.0f rows/s)\n", r.Seconds, rate)
	_, err := io.WriteString(w, b.String())
	return err
}

// plural writes "1 job", "2 jobs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
