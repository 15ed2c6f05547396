package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"

	"github.com/tsfallback/tsfallback/importer"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

// natsEnv runs commands against url, with their output in buffers.
type natsEnv struct {
	lookup envconfig.Lookuper
}

func newNatsEnv(url string) natsEnv {
	return natsEnv{lookup: envconfig.MapLookuper(map[string]string{"TSFB_NATS_URL": url})}
}

// run runs one command and returns its exit code, stdout and stderr.
func (n natsEnv) run(ctx context.Context, stdin string, args ...string) (int, string, string) {
	out, errOut := &syncBuffer{}, &syncBuffer{}
	code := Main(ctx, args, Env{Stdin: strings.NewReader(stdin), Stdout: out, Stderr: errOut,
		Lookup: n.lookup})
	return code, out.String(), errOut.String()
}

func jobMessages(t *testing.T, url string) uint64 {
	return queuetest.Count(t, queuetest.Open(t, url), queue.StreamJobs)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sampleCSV(t *testing.T, n int) string {
	t.Helper()
	var b bytes.Buffer
	if err := importer.WriteSample(&b, n, 11); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestImportCommand runs `tsfallback import` as an operator does: a clean
// file, the same run again, a dry run, and a file with rejected rows.
func TestImportCommand(t *testing.T) {
	url := queuetest.Server(t)
	env := newNatsEnv(url)
	ctx := context.Background()
	good := writeFile(t, "good.csv", sampleCSV(t, 250))

	// A clean file: exit 0, three jobs of at most 100 devices.
	code, out, errOut := env.run(ctx, "", "import", good, "--account", testAccount,
		"--job-size", "100", "--run-id", "cli1", "--quiet")
	if code != ExitOK {
		t.Fatalf("import exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	for _, want := range []string{"run id:      cli1", "published:   250 devices in 3 jobs (cli1-1 .. cli1-3)",
		"rejected:    0 rows"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if n := jobMessages(t, url); n != 3 {
		t.Fatalf("stream holds %d jobs, want 3", n)
	}

	// The same run id again adds nothing: the stream drops the repeats.
	code, out, _ = env.run(ctx, "", "import", "--account", testAccount, "--job-size", "100",
		"--run-id", "cli1", "--quiet", good)
	if code != ExitOK || !strings.Contains(out, "published before: 3 of these jobs") {
		t.Fatalf("re-run exit %d, want 0 and 3 jobs already published:\n%s", code, out)
	}
	if n := jobMessages(t, url); n != 3 {
		t.Fatalf("after the re-run the stream holds %d jobs, want 3", n)
	}

	// A dry run, from standard input, publishes nothing.
	code, out, _ = env.run(ctx, sampleCSV(t, 40), "import", "--account", testAccount,
		"--run-id", "dry1", "--dry-run", "--quiet", "-")
	if code != ExitOK || !strings.Contains(out, "would publish (dry run): 40 devices in 1 job") {
		t.Fatalf("dry run exit %d:\n%s", code, out)
	}
	if n := jobMessages(t, url); n != 3 {
		t.Fatalf("after the dry run the stream holds %d jobs, want 3", n)
	}

	// A dry run of a used run id says what a real run would find.
	code, out, _ = env.run(ctx, "", "import", good, "--account", testAccount,
		"--job-size", "100", "--run-id", "cli1", "--dry-run", "--quiet")
	if code != ExitOK || !strings.Contains(out, "published before: 3 of these jobs") {
		t.Fatalf("dry run of run cli1 exit %d, want 0 and 3 jobs already published:\n%s", code, out)
	}
	code, _, errOut = env.run(ctx, "", "import", good, "--account", testAccount,
		"--job-size", "50", "--run-id", "cli1", "--dry-run", "--quiet")
	if code != ExitUsage || !strings.Contains(errOut, "a real run would stop") {
		t.Fatalf("dry run of run cli1 with another job size: exit %d, want %d:\n%s", code,
			ExitUsage, errOut)
	}
	// Without NATS it still runs, and says what it did not check.
	code, out, errOut = newNatsEnv("nats://127.0.0.1:1").run(ctx, "", "import", good,
		"--account", testAccount, "--run-id", "cli1", "--dry-run", "--quiet")
	if code != ExitOK || !strings.Contains(out, "250 devices") ||
		!strings.Contains(errOut, "not checked against earlier runs") {
		t.Fatalf("dry run without NATS: exit %d\n%s\n%s", code, out, errOut)
	}

	// Rejected rows: exit 1, the good rows are published, the report has
	// one JSON line per bad field.
	lines := strings.Split(strings.TrimSpace(sampleCSV(t, 5)), "\n")
	// The header and two rows, a damaged row (line 4), a row, and an IMEI
	// that lost its leading zeros (line 6).
	bad := strings.Join(lines[:3], "\n") + "\n,8.9148E+19,\n" + lines[3] + "\n,,4901542032375\n"
	input := writeFile(t, "bad.csv", bad)
	report := filepath.Join(t.TempDir(), "rejected.jsonl")
	code, out, errOut = env.run(ctx, "", "import", "--account", testAccount, "--run-id", "cli2",
		"--report", report, "--quiet", input)
	if code != ExitPartial {
		t.Fatalf("exit %d, want %d\n%s\n%s", code, ExitPartial, out, errOut)
	}
	if !strings.Contains(out, "published:   3 devices in 1 job") ||
		!strings.Contains(errOut, "2 rows rejected") {
		t.Errorf("summary:\n%s\nstderr:\n%s", out, errOut)
	}
	if n := jobMessages(t, url); n != 4 {
		t.Fatalf("stream holds %d jobs, want 4", n)
	}
	f, err := os.Open(report)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("report line %q: %v", sc.Text(), err)
		}
		for _, k := range []string{"line", "column", "value", "reason"} {
			if _, ok := m[k]; !ok {
				t.Errorf("report line %s lacks %q", sc.Text(), k)
			}
		}
		got = append(got, m)
	}
	if len(got) != 2 || got[0]["line"] != 4.0 || got[0]["column"] != "iccid" ||
		got[0]["code"] != importer.ReasonScientific || got[1]["line"] != 6.0 ||
		got[1]["code"] != importer.ReasonLeadingZeros {
		t.Errorf("report: %v", got)
	}
}

func TestImportCommandFatal(t *testing.T) {
	env := newNatsEnv(queuetest.Server(t))
	ctx := context.Background()
	noHeader := writeFile(t, "ids.csv", "89148000000000000001\n")
	for _, tt := range []struct {
		name, stdin string
		args        []string
		text        string
	}{
		{"no file", "", []string{"import", "--account", testAccount}, "at least one FILE"},
		{"missing file", "", []string{"import", "--account", testAccount, "/nonexistent/x.csv"},
			"no such file"},
		{"bad separator", "", []string{"import", "--account", testAccount, "--separator", "|", "-"},
			"--separator"},
		{"bad account", "", []string{"import", "--account", "123", "-"}, "account"},
		{"bad run id", "", []string{"import", "--account", testAccount, "--run-id", "a.b", "-"},
			"run id"},
		{"no account", "iccid\n", []string{"import", "-"}, "no account"},
		{"no header", "", []string{"import", "--account", testAccount, noHeader},
			"looks like an identifier"},
		{"unknown flag", "", []string{"import", "--acount", testAccount, "-"}, "acount"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := env.run(ctx, tt.stdin, tt.args...)
			if code != ExitUsage || !strings.Contains(errOut, tt.text) {
				t.Errorf("exit %d, want %d with %q\nstdout:\n%s\nstderr:\n%s", code, ExitUsage,
					tt.text, out, errOut)
			}
		})
	}
}

// TestImportReportIsNoInput: a --report that names an input file would
// empty it before it is read; it is refused, and the file is untouched.
func TestImportReportIsNoInput(t *testing.T) {
	env := newNatsEnv("nats://127.0.0.1:1")
	input := sampleCSV(t, 3)
	in := writeFile(t, "in.csv", input)
	for _, report := range []string{in, "-"} {
		code, _, errOut := env.run(context.Background(), "", "import", "--account", testAccount,
			"--dry-run", "--quiet", "--report", report, in)
		if code != ExitUsage || !strings.Contains(errOut, "--report") {
			t.Errorf("--report %s: exit %d, want %d naming --report:\n%s", report, code, ExitUsage, errOut)
		}
	}
	// The same file on standard input (import ... - < in.csv).
	f, err := os.Open(in)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	errOut := &syncBuffer{}
	code := Main(context.Background(), []string{"import", "--account", testAccount, "--dry-run",
		"--quiet", "--report", in, "-"}, Env{Stdin: f, Stdout: &syncBuffer{}, Stderr: errOut,
		Lookup: env.lookup})
	if code != ExitUsage || !strings.Contains(errOut.String(), "on standard input") {
		t.Errorf("--report of the file on stdin: exit %d, want %d:\n%s", code, ExitUsage, errOut)
	}
	if b, err := os.ReadFile(in); err != nil || string(b) != input {
		t.Fatalf("the input after the refused runs: %q, %v", b, err)
	}
}
