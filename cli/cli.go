package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/sethvargo/go-envconfig"

	"github.com/tsfallback/tsfallback/config"
)

// Exit codes shared by every command.
const (
	ExitOK      = 0
	ExitPartial = 1 // some input was rejected; the rest was processed
	ExitUsage   = 2 // bad arguments or a fatal error
)

// Env is what a command receives from its process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Lookup reads configuration variables; nil means the process
	// environment, with the _FILE rule for secrets.
	Lookup envconfig.Lookuper
}

func (e Env) lookuper() envconfig.Lookuper {
	if e.Lookup == nil {
		return config.Lookuper()
	}
	return config.FileLookuper(e.Lookup)
}

// exitError carries an exit code other than ExitUsage.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

type command struct {
	summary string
	run     func(ctx context.Context, env Env, args []string) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"serve":     {"run the service roles (worker, callback ingester, correlator, sweeper)", runServe},
		"demo":      {"run everything in one process against the simulator and print a summary", runDemo},
		"import":    {"stream CSV files of devices into jobs", runImport},
		"publish":   {"publish one job from a JSON file or standard input", runPublish},
		"results":   {"print result events as JSON lines", runResults},
		"status":    {"print a job's progress", runStatus},
		"sim":       {"run the ThingSpace simulator", runSim},
		"callbacks": {"manage callback registrations (callbacks register|list|delete)", runCallbacks},
		"login":     {"show or reset the shared count of rejected ThingSpace logins (login status|reset)", runLogin},
	}
}

// Main runs the command named by args[0] and returns the exit code.
func Main(ctx context.Context, args []string, env Env) int {
	if len(args) >= 2 && args[0] == "help" {
		// "help import" is "import --help".
		args = []string{args[1], "--help"}
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.Stdout)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.Stderr, "tsfallback: unknown command %q\n\n", args[0])
		usage(env.Stderr)
		return ExitUsage
	}
	err := cmd.run(ctx, env, args[1:])
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintf(env.Stderr, "tsfallback %s: %v\n", args[0], ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(env.Stderr, "tsfallback %s: %v\n", args[0], err)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "tsfallback sets the eSIM fallback attribute on fleets of devices through ThingSpace.")
	fmt.Fprintln(w, "\nUsage: tsfallback COMMAND [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun `tsfallback COMMAND --help` for a command's flags. Configuration comes from")
	fmt.Fprintln(w, "TSFB_ environment variables; see README.md.")
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(env Env, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: tsfallback %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and allows flags after positional arguments, as
// operators type them ("import file.csv --account A").
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func usageErr(format string, a ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, a...)}
}

// isTerminal reports whether w is a terminal, for progress bars.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
