package cli

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/results"
)

func runResults(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "results", "[--job ID] [--account ACCOUNT] [--type T[,T...]] [--follow] [--new] [--durable NAME]")
	var o results.Options
	var types string
	fs.StringVar(&o.JobID, "job", "", "only this job's events")
	fs.StringVar(&o.Account, "account", "", "only this account's events")
	fs.StringVar(&types, "type", "", "only these event types, comma-separated (e.g. device.failed,job.completed)")
	fs.BoolVar(&o.Follow, "follow", false, "keep printing new events until interrupted")
	fs.BoolVar(&o.OnlyNew, "new", false, "start with events published from now on, not the start of the stream")
	fs.StringVar(&o.Durable, "durable", "", "read through this named durable consumer, resuming where the last read stopped")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	o.Types = splitList(types)
	for _, t := range o.Types {
		if !knownEventType(t) {
			return usageErr("--type: unknown event type %q", t)
		}
	}
	if err := o.Validate(); err != nil {
		return usageErr("%v", err)
	}
	s, err := loadSettings(ctx, env)
	if err != nil {
		return err
	}
	bus, err := queue.Open(ctx, s.Queue, "tsfallback-results", zap.NewNop())
	if err != nil {
		return err
	}
	defer bus.Close()
	return results.Read(ctx, bus.JS, o, func(_ model.Event, raw []byte) error {
		_, err := fmt.Fprintf(env.Stdout, "%s\n", raw)
		return err
	})
}

func knownEventType(t string) bool {
	switch t {
	case model.EventJobAccepted, model.EventJobRejected, model.EventJobFailed,
		model.EventRequestSubmitted, model.EventDeviceSucceeded, model.EventDeviceFailed,
		model.EventDeviceTimedOut, model.EventDeviceUnmatched, model.EventDeviceStatus,
		model.EventJobCompleted:
		return true
	}
	return false
}
