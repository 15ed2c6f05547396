package cli

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/thingspace"
)

// runLogin shows or clears the deployment-wide count of rejected logins
// that stops every process before ThingSpace locks the account.
func runLogin(ctx context.Context, env Env, args []string) error {
	if len(args) != 1 || (args[0] != "status" && args[0] != "reset") {
		return usageErr("usage: tsfallback login status|reset (for TSFB_THINGSPACE_USERNAME)")
	}
	s, err := loadSettings(ctx, env)
	if err != nil {
		return usageErr("%v", err)
	}
	if s.ThingSpace.Username == "" {
		return usageErr("TSFB_THINGSPACE_USERNAME: required")
	}
	bus, err := queue.Open(ctx, s.Queue, "tsfallback-login", zap.NewNop())
	if err != nil {
		return err
	}
	defer bus.Close()
	g := bus.NewLoginGuard(s.ThingSpace.Username)
	if args[0] == "reset" {
		if err := g.Reset(ctx); err != nil {
			return err
		}
		fmt.Fprintf(env.Stdout, "cleared the count of rejected logins for %s; workers try again on their next job "+
			"(restart those that stopped)\n", s.ThingSpace.Username)
		return nil
	}
	n, err := g.Failures(ctx)
	if err != nil {
		return err
	}
	limit := s.ThingSpace.Defaulted().LoginAttempts
	state := "logins allowed"
	if n >= limit {
		state = "stopped: fix the credentials, then run `tsfallback login reset`"
	}
	fmt.Fprintf(env.Stdout, "%s: %d of %d rejected logins in a row (%s)\n", s.ThingSpace.Username, n, limit, state)
	return nil
}

// guardedClient returns a ThingSpace client for an operator command, with
// the shared login guard when NATS answers within a few seconds, so that a
// wrong password typed by hand also counts against the cap.
func guardedClient(ctx context.Context, s Settings, log *zap.Logger) (*thingspace.Client, func(), error) {
	octx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	bus, err := queue.Open(octx, s.Queue, "tsfallback-callbacks", zap.NewNop())
	if err != nil {
		log.Warn("login_guard_unavailable", zap.Error(err))
		c, err := thingspace.New(s.ThingSpace, log)
		return c, func() {}, err
	}
	c, err := thingspace.New(s.ThingSpace, log, thingspace.WithLoginGuard(bus.NewLoginGuard(s.ThingSpace.Username)))
	if err != nil {
		bus.Close()
		return nil, nil, err
	}
	return c, bus.Close, nil
}
