package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/results"
)

func runStatus(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "status", "JOB [--json]")
	asJSON := fs.Bool("json", false, "print the progress as one JSON object")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr("status takes one job id")
	}
	if err := model.ValidateJobID(pos[0]); err != nil {
		return usageErr("%v", err)
	}
	s, err := loadSettings(ctx, env)
	if err != nil {
		return err
	}
	bus, err := queue.Open(ctx, s.Queue, "tsfallback-status", zap.NewNop())
	if err != nil {
		return err
	}
	defer bus.Close()
	tr, err := progress.New(bus, zap.NewNop())
	if err != nil {
		return err
	}
	st, err := tr.Get(ctx, pos[0])
	if errors.Is(err, progress.ErrJobNotFound) {
		// A rejected job never gets a progress record; its event says why.
		if rej, ok := rejection(ctx, bus, pos[0]); ok {
			if *asJSON {
				if err := json.NewEncoder(env.Stdout).Encode(rej); err != nil {
					return err
				}
				return &exitError{code: ExitPartial}
			}
			fmt.Fprintf(env.Stdout, "job %s (account %s): rejected, nothing was submitted\n", rej.JobID, rej.AccountName)
			for _, p := range rej.Problems {
				fmt.Fprintf(env.Stdout, "  %s\n", p)
			}
			return &exitError{code: ExitPartial}
		}
		return &exitError{code: ExitPartial, err: fmt.Errorf("job %s: no progress recorded (not accepted yet, or unknown)", pos[0])}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(env.Stdout).Encode(st)
	}
	state := "in progress"
	if st.Completed {
		state = "completed"
	}
	c := st.Counts
	fmt.Fprintf(env.Stdout, "job %s (account %s): %s\n", st.JobID, st.AccountName, state)
	fmt.Fprintf(env.Stdout, "  devices %d, succeeded %d, failed %d, timed out %d, pending %d\n",
		c.Devices, c.Succeeded, c.Failed, c.TimedOut, st.Pending())
	return nil
}

// rejection finds the job's job.rejected event, if it has one.
func rejection(ctx context.Context, bus *queue.Bus, jobID string) (model.Event, bool) {
	var found model.Event
	errStop := errors.New("found")
	err := results.Read(ctx, bus.JS, results.Options{JobID: jobID, Types: []string{model.EventJobRejected}},
		func(e model.Event, _ []byte) error {
			found = e
			return errStop
		})
	return found, errors.Is(err, errStop)
}
