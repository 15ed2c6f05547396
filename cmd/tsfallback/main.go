// Command tsfallback sets the eSIM fallback attribute on fleets of devices
// through the ThingSpace API: run `tsfallback help` for its commands. The
// command logic lives in package cli; this file only wires the process to
// it: arguments, standard streams, signals and the exit code.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tsfallback/tsfallback/cli"
)

func main() {
	// The first SIGINT or SIGTERM cancels ctx and starts a graceful stop; a
	// second one ends the process at once (signal.NotifyContext restores
	// the default handling after the first).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], cli.Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
