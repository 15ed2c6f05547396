package importer

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"time"

	"github.com/tsfallback/tsfallback/model"
)

// Limits of Options.
const (
	// MaxJobSize bounds Options.JobSize so that a job stays well under
	// NATS's default 1 MB message limit (about 150 bytes a device).
	MaxJobSize = 5000
	// MaxRunIDLen leaves room for "-<n>" in a job id.
	MaxRunIDLen = model.MaxJobIDLen - 11
	// DefaultProgressInterval is the period of plain progress lines.
	DefaultProgressInterval = 5 * time.Second
	// StdinName is the file name that reads the Run's stdin.
	StdinName = "-"
)

// ErrOptions is matched by every invalid option; it is a usage error.
var ErrOptions = errors.New("importer: invalid options")

// Options describe one import run.
type Options struct {
	// Files are read in order; StdinName ("-") reads stdin, once.
	Files []string
	// Account is used for rows without an account cell. A row whose
	// account cell differs from it is rejected.
	Account string
	// JobSize is the most devices per job; 0 means
	// model.DefaultMaxJobDevices.
	JobSize int
	// RunID prefixes the job ids; generated when empty. Re-running with
	// the same files, JobSize and RunID publishes the same jobs again,
	// which the stream and the worker drop as repeats. Use it only on
	// unchanged input: rows fixed after a run land in job ids that were
	// already published and would be dropped too, so import them under a
	// new run id.
	RunID string
	// ReplyTo is set on every job, so that its result events also go to
	// that subject (optional).
	ReplyTo string
	// DryRun reads and checks everything and publishes nothing.
	DryRun bool
	// Separator is ',', ';' or '\t'; 0 detects it from each header line.
	Separator rune
	// Report receives each rejected field or row as a JSON line (see
	// Rejection); nil discards them.
	Report io.Writer
	// Progress receives progress: a bar redrawn in place when it is a
	// terminal, otherwise a plain line every ProgressInterval; nil for
	// none.
	Progress io.Writer
	// ProgressInterval is the period of plain progress lines; 0 means
	// DefaultProgressInterval.
	ProgressInterval time.Duration
}

// defaulted fills zero values and checks the rest.
func (o Options) defaulted() (Options, error) {
	if o.JobSize == 0 {
		o.JobSize = model.DefaultMaxJobDevices
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if o.RunID == "" {
		o.RunID = NewRunID(time.Now())
	}
	if err := o.validate(); err != nil {
		return o, err
	}
	return o, nil
}

func (o Options) validate() error {
	if len(o.Files) == 0 {
		return fmt.Errorf("%w: no files (use %q for standard input)", ErrOptions, StdinName)
	}
	stdin := 0
	for _, f := range o.Files {
		if f == StdinName {
			stdin++
		}
		if f == "" {
			return fmt.Errorf("%w: empty file name", ErrOptions)
		}
	}
	if stdin > 1 {
		return fmt.Errorf("%w: standard input (%q) given %d times", ErrOptions, StdinName, stdin)
	}
	if err := sameFiles(o.Files); err != nil {
		return err
	}
	if o.JobSize < 1 || o.JobSize > MaxJobSize {
		return fmt.Errorf("%w: job size %d, want 1 to %d", ErrOptions, o.JobSize, MaxJobSize)
	}
	if o.Account != "" {
		if err := model.ValidateAccountName(o.Account); err != nil {
			return fmt.Errorf("%w: account: %w", ErrOptions, err)
		}
	}
	if err := model.ValidateJobID(o.RunID); err != nil || len(o.RunID) > MaxRunIDLen {
		return fmt.Errorf("%w: run id %q: want 1 to %d of [A-Za-z0-9_-]", ErrOptions,
			o.RunID, MaxRunIDLen)
	}
	if o.ReplyTo != "" {
		if err := model.ValidateReplySubject(o.ReplyTo); err != nil {
			return fmt.Errorf("%w: --reply-to: %w", ErrOptions, err)
		}
	}
	switch o.Separator {
	case 0, ',', ';', '\t':
	default:
		return fmt.Errorf("%w: separator %q, want comma, semicolon or tab", ErrOptions, o.Separator)
	}
	return nil
}

// sameFiles refuses a file given twice (under any name): all its rows
// would be duplicates the second time, which is never what was meant.
func sameFiles(files []string) error {
	var seen []os.FileInfo
	var names []string
	for _, f := range files {
		if f == StdinName {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			continue // reported when the file is opened, in its turn
		}
		for i, prev := range seen {
			if os.SameFile(prev, fi) {
				return fmt.Errorf("%w: %s and %s are the same file", ErrOptions, names[i], f)
			}
		}
		seen, names = append(seen, fi), append(names, f)
	}
	return nil
}

// NewRunID returns a fresh run id: "imp-<UTC time>-<random>".
func NewRunID(now time.Time) string {
	return fmt.Sprintf("imp-%s-%06x", now.UTC().Format("20060102-150405"), rand.Uint32()&0xffffff)
}
