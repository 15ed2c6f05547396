package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/importer"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

// TestBulkImport runs scripts/bulk-import on a folder as an operator
// does, then again: the second run publishes nothing new, and the totals
// say so.
func TestBulkImport(t *testing.T) {
	needBinaries(t)
	url := queuetest.Server(t)
	dir := t.TempDir()
	write := func(name string, rows int, seed uint64, extra string) {
		var b bytes.Buffer
		if err := importer.WriteSample(&b, rows, seed); err != nil {
			t.Fatal(err)
		}
		b.WriteString(extra)
		if err := os.WriteFile(filepath.Join(dir, name), b.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("a.csv", 250, 1, "")
	write("b.csv", 120, 2, ",8.9148E+19,\n") // one damaged row
	write("notes.txt", 5, 3, "")             // not a CSV: not imported

	run := func(acct string) (int, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "../scripts/bulk-import", "--account", acct,
			"--job-size", "100", dir)
		cmd.Env = append(os.Environ(), "TSFALLBACK="+bin.tsfallback, "TSFB_NATS_URL="+url)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("bulk-import: %v\n%s", err, out)
		}
		return cmd.ProcessState.ExitCode(), string(out)
	}
	jobs := func() uint64 { return queuetest.Count(t, queuetest.Open(t, url), queue.StreamJobs) }

	code, out := run(account)
	for _, want := range []string{"== total: 2 files: 1 fully published, 1 with rejected rows, 0 failed",
		"rows 371, published 370 devices in 5 jobs (0 of them published before), rejected 1 rows"} {
		if !strings.Contains(out, want) {
			t.Errorf("first run lacks %q:\n%s", want, out)
		}
	}
	if code != 1 || jobs() != 5 {
		t.Fatalf("first run: exit %d, %d jobs in the stream; want 1 and 5\n%s", code, jobs(), out)
	}
	if _, err := os.Stat(filepath.Join(dir, "b.csv.rejected.jsonl")); err != nil {
		t.Errorf("report of the rejected row: %v", err)
	}

	code, out = run(account)
	if !strings.Contains(out, "published 370 devices in 5 jobs (5 of them published before)") ||
		code != 1 || jobs() != 5 {
		t.Fatalf("second run: exit %d, %d jobs in the stream, want 1 and 5 (all already there)\n%s",
			code, jobs(), out)
	}

	// The same files for another account are other runs, not a reuse.
	code, out = run("0000654321-00002")
	if !strings.Contains(out, "1 with rejected rows, 0 failed") || code != 1 || jobs() != 10 {
		t.Fatalf("another account: exit %d, %d jobs in the stream, want 1 and 10\n%s", code, jobs(), out)
	}
}
