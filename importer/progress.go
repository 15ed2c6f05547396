package importer

import (
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/term"
)

const ttyInterval = 200 * time.Millisecond

// progress prints progress from the import loop itself, so it needs no
// goroutine and no locking.
type progress struct {
	w     io.Writer
	tty   bool
	every time.Duration
	start time.Time
	last  time.Time
	total int64 // bytes of all regular files; 0 when unknown (stdin)
	read  func() int64
}

func newProgress(w io.Writer, every time.Duration, total int64, read func() int64) *progress {
	if w == nil {
		return nil
	}
	p := &progress{w: w, every: every, start: time.Now(), total: total, read: read}
	if f, ok := w.(interface{ Fd() uintptr }); ok && term.IsTerminal(int(f.Fd())) {
		p.tty = true
		p.every = ttyInterval
	}
	p.last = p.start
	return p
}

// tick prints when the interval has passed.
func (p *progress) tick(r *Result) {
	if p == nil {
		return
	}
	now := time.Now()
	if now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	p.print(r, now)
}

// done prints the last state and ends the bar's line.
func (p *progress) done(r *Result) {
	if p == nil {
		return
	}
	p.print(r, time.Now())
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

func (p *progress) print(r *Result, now time.Time) {
	secs := now.Sub(p.start).Seconds()
	rate := 0.0
	if secs > 0 {
		rate = float64(r.Rows) / secs
	}
	counts := fmt.Sprintf("%s, %s in %s, %d rejected, %d duplicates, %.0f rows/s",
		plural(r.Rows, "row"), plural(r.Devices, "device"), plural(r.Jobs, "job"), r.Rejected,
		r.Duplicates, rate)
	if !p.tty {
		fmt.Fprintf(p.w, "import: %s\n", counts)
		return
	}
	bar := ""
	if p.total > 0 {
		frac := float64(p.read()) / float64(p.total)
		frac = min(max(frac, 0), 1)
		const width = 30
		n := int(frac * width)
		bar = fmt.Sprintf("[%s%s] %3.0f%% ", strings.Repeat("#", n),
			strings.Repeat(".", width-n), frac*100)
	}
	// \r and clear-to-end redraw the bar in place.
	fmt.Fprintf(p.w, "\r%s%s\x1b[K", bar, counts)
}
