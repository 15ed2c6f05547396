package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/thingspace/sim"
)

func runSim(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "sim", "[--addr HOST:PORT] [flags]")
	addr := fs.String("addr", sim.DefaultAddr, "listen address of the simulator")
	// TSFB_SIM_ variables set the defaults; flags override them.
	cfg := sim.DefaultConfig()
	if err := config.Load(ctx, env.lookuper(), &cfg); err != nil {
		return usageErr("%v", err)
	}
	cfg.RegisterFlags(fs)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	s, err := loadSettings(ctx, env)
	if err != nil {
		return err
	}
	log, err := newLogger(s.Log, env.Stderr, "info")
	if err != nil {
		return usageErr("%v", err)
	}
	srv, err := sim.New(cfg, log)
	if err != nil {
		return usageErr("%v", err)
	}
	base, err := srv.Start(*addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "ThingSpace simulator at %s (stats at %s)\n", base, statsURL(base))
	<-ctx.Done()
	done := make(chan error, 1)
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		return fmt.Errorf("simulator did not stop within 10s")
	}
}

// statsURL turns ".../api" into ".../_sim/stats".
func statsURL(base string) string {
	if len(base) >= 4 && base[len(base)-4:] == "/api" {
		return base[:len(base)-4] + "/_sim/stats"
	}
	return base + "/_sim/stats"
}
