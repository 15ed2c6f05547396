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
