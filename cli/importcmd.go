package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/importer"
	"github.com/tsfallback/tsfallback/queue"
)

func runImport(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "import", "--account ACCOUNT [--job-size N] [--run-id ID] [--dry-run] [--report FILE] FILE... (- reads standard input)")
	var o importer.Options
	var sep, report string
	var quiet bool
	fs.StringVar(&o.Account, "account", "", "account of rows without an account column")
	fs.IntVar(&o.JobSize, "job-size", 0, "devices per job (default TSFB_MAX_JOB_DEVICES, 1000)")
	fs.StringVar(&o.RunID, "run-id", "", "run id: the same id re-publishes the same jobs, so a re-run submits nothing twice (default: new)")
	fs.StringVar(&o.ReplyTo, "reply-to", "", "NATS subject that also receives the jobs' result events")
	fs.BoolVar(&o.DryRun, "dry-run", false, "check every row, publish nothing")
	fs.StringVar(&sep, "separator", "", "field separator: comma, semicolon or tab (default: detected)")
	fs.StringVar(&report, "report", "", "write rejected rows to this file as JSON lines")
	fs.BoolVar(&quiet, "quiet", false, "no progress output")
	files, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return usageErr("import needs at least one FILE (- reads standard input)")
	}
	o.Files = files
	switch sep {
	case "":
	case ",", "comma":
		o.Separator = ','
	case ";", "semicolon":
		o.Separator = ';'
	case "\t", "tab":
		o.Separator = '\t'
	default:
		return usageErr("--separator: %q, want comma, semicolon or tab", sep)
	}
	if !quiet {
		o.Progress = env.Stderr
	}
	if report != "" {
		if err := reportIsNoInput(report, files, env.Stdin); err != nil {
			return err
		}
		f, err := os.Create(report)
		if err != nil {
			return usageErr("--report: %v", err)
		}
		defer f.Close()
		o.Report = f
	}
	s, err := loadSettings(ctx, env)
	if err != nil {
		return usageErr("%v", err)
	}
	if o.JobSize == 0 {
		// Jobs as large as the workers take, not a fixed default.
		o.JobSize = s.Worker.MaxJobDevices
	}
	if limit := s.Worker.MaxJobDevices; o.JobSize < 1 || o.JobSize > limit {
		return usageErr("--job-size %d: want 1 to TSFB_MAX_JOB_DEVICES (%d), the most the workers take", o.JobSize, limit)
	}
	log, err := newLogger(s.Log, env.Stderr, "warn")
	if err != nil {
		return usageErr("%v", err)
	}
	var nc *nats.Conn
	switch {
	case !o.DryRun:
		bus, err := queue.Open(ctx, s.Queue, "tsfallback-import", log)
		if err != nil {
			return err
		}
		defer bus.Close()
		nc = bus.NC
	case o.RunID != "":
		// A dry run of a given run id tells what a real run would find
		// in the run manifest, when NATS is there; it never needs NATS.
		if nc, err = queue.Connect(s.Queue, "tsfallback-import-dry-run", log); err != nil {
			fmt.Fprintf(env.Stderr, "tsfallback import: dry run without NATS: run id %s is not "+
				"checked against earlier runs (%v)\n", o.RunID, err)
		} else {
			defer nc.Close()
		}
	}
	res, runErr := runImporter(ctx, nc, s.Import, o, env, log)
	code := importer.ExitCode(res, runErr)
	switch {
	case runErr != nil && errors.Is(runErr, importer.ErrOptions):
		return usageErr("%v", runErr)
	case runErr != nil:
		return &exitError{code: code, err: runErr}
	case code != ExitOK && o.DryRun:
		return &exitError{code: code, err: fmt.Errorf("%s rejected (dry run: nothing was published)", rows(res.Rejected))}
	case code != ExitOK:
		return &exitError{code: code, err: fmt.Errorf("%s rejected; the good rows were published", rows(res.Rejected))}
	}
	return nil
}

// runImporter runs an import on nc (nil for a dry run without NATS) and
// writes the summary to env.Stdout.
func runImporter(ctx context.Context, nc *nats.Conn, cfg importer.Config, o importer.Options,
	env Env, log *zap.Logger) (importer.Result, error) {
	im, err := importer.New(nc, cfg, log)
	if err != nil {
		return importer.Result{}, usageErr("%v", err)
	}
	return im.Run(ctx, o, env.Stdin, env.Stdout)
}

// reportIsNoInput refuses a --report path that would overwrite one of the
// input files before it is read (standard input too, when it is a file),
// and "-", which names standard input among the files but would be a file
// called "-" here.
func reportIsNoInput(report string, files []string, stdin io.Reader) error {
	if report == importer.StdinName {
		return usageErr("--report: give a file name (standard output carries the summary)")
	}
	rfi, err := os.Stat(report)
	if err != nil {
		return nil // a new file cannot be an input
	}
	for _, f := range files {
		var fi os.FileInfo
		if f == importer.StdinName {
			if sf, ok := stdin.(*os.File); ok {
				fi, err = sf.Stat()
			}
		} else {
			fi, err = os.Stat(f)
		}
		if err == nil && fi != nil && os.SameFile(rfi, fi) {
			name := f
			if f == importer.StdinName {
				name = "on standard input"
			}
			return usageErr("--report %s is the input file %s: it would be overwritten", report, name)
		}
	}
	return nil
}

func rows(n int) string { return plural(n, "row") }

// plural writes "1 row", "2 rows".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
