package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/tsfallback/tsfallback/callback"
	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/ratelimit"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/worker"
)

// Roles of serve.
const (
	RoleWorker     = "worker"
	RoleIngester   = "ingester"
	RoleCorrelator = "correlator"
	RoleSweeper    = "sweeper"
)

var allRoles = []string{RoleWorker, RoleIngester, RoleCorrelator, RoleSweeper}

func runServe(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "serve", "[--roles worker,ingester,correlator,sweeper]")
	roleList := fs.String("roles", "worker,ingester,correlator,sweeper", "roles to run, comma-separated")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	roles := splitList(*roleList)
	if len(roles) == 0 {
		return usageErr("--roles: no role given")
	}
	for _, r := range roles {
		if !slices.Contains(allRoles, r) {
			return usageErr("--roles: unknown role %q (want %v)", r, allRoles)
		}
	}
	s, err := loadSettingsLenient(ctx, env)
	if err != nil {
		return usageErr("%v", err)
	}
	log, err := newLogger(s.Log, env.Stderr, "info")
	if err != nil {
		return usageErr("%v", err)
	}
	defer log.Sync() //nolint:errcheck // nothing to do about a failed flush at exit
	if err := validateFor(s, roles); err != nil {
		return usageErr("%v", err)
	}
	log.Info("starting", zap.Strings("roles", roles), zap.Any("config", config.Effective(s)))

	if s.Queue.URL == "" {
		ns, url, err := queue.StartEmbedded(s.Queue.Defaulted().EmbeddedListen, s.Queue.Defaulted().DataDir)
		if err != nil {
			return err
		}
		s.Queue.URL = url
		log.Info("embedded_nats_started", zap.String("url", url), zap.String("data_dir", s.Queue.Defaulted().DataDir))
		defer func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		}()
	}
	host, _ := os.Hostname()
	bus, err := queue.Open(ctx, s.Queue, "tsfallback-serve-"+host, log)
	if err != nil {
		return err
	}
	defer bus.Close()

	err = runRoles(ctx, s, roles, bus, log, nil)
	log.Info("stopped")
	return err
}

// validateFor checks the configuration parts the roles use.
func validateFor(s Settings, roles []string) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(s.Queue.Validate())
	if slices.Contains(roles, RoleWorker) {
		add(s.ThingSpace.Validate())
		add(s.Rate.Validate())
		add(s.Worker.Validate())
		if s.Worker.ChunkSize > s.ThingSpace.MaxDevices {
			add(fmt.Errorf("TSFB_CHUNK_SIZE: %d is above TSFB_THINGSPACE_MAX_DEVICES (%d): every full request would be refused",
				s.Worker.ChunkSize, s.ThingSpace.MaxDevices))
		}
	}
	if slices.Contains(roles, RoleIngester) || slices.Contains(roles, RoleCorrelator) || slices.Contains(roles, RoleSweeper) {
		add(s.Callback.Validate())
	}
	add(s.replacedErr(errs))
	return errors.Join(errs...)
}

// started is told the ingester's address once it listens (for the demo).
type started func(ingesterAddr string)

// runRoles runs the roles until ctx ends, then stops them in order: the
// worker stops fetching and lets its jobs finish within its shutdown
// timeout; the ingester stops taking callbacks and finishes those it
// holds; the correlator and sweeper stop after their current batch.
func runRoles(ctx context.Context, s Settings, roles []string, bus *queue.Bus, log *zap.Logger, onStart started) error {
	tr, err := progress.New(bus, log)
	if err != nil {
		return err
	}
	// A role that fails to start stops the ones already running before
	// runRoles returns, so none outlives the bus it uses.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(rctx)
	fail := func(err error) error {
		cancel()
		_ = g.Wait()
		return err
	}
	has := func(r string) bool { return slices.Contains(roles, r) }

	// The client is shared by the worker and the sweeper's status checks,
	// so they share one token and one session. The sweeper runs without
	// checks when ThingSpace is not configured in its process.
	var client *thingspace.Client
	if has(RoleWorker) || s.ThingSpace.Validate() == nil {
		guard := thingspace.WithLoginGuard(bus.NewLoginGuard(s.ThingSpace.Username))
		if client, err = thingspace.New(s.ThingSpace, log, guard); err != nil {
			return fail(err)
		}
	}
	if has(RoleWorker) {
		host, _ := os.Hostname()
		id := fmt.Sprintf("%s-%d-%d", host, os.Getpid(), time.Now().UnixNano()%1e6)
		lim, err := ratelimit.New(ctx, s.Rate, bus.Workers, id, log)
		if err != nil {
			return fail(err)
		}
		defer lim.Close()
		w, err := worker.New(s.Worker, bus, client, lim, tr, log)
		if err != nil {
			return fail(err)
		}
		g.Go(func() error { return w.Run(gctx) })
	}
	if has(RoleIngester) {
		ing, err := callback.NewIngester(s.Callback, bus, log)
		if err != nil {
			return fail(err)
		}
		ln, err := net.Listen("tcp", s.Callback.Defaulted().Addr)
		if err != nil {
			return fail(fmt.Errorf("TSFB_CALLBACK_ADDR: listening on %s: %w", s.Callback.Defaulted().Addr, err))
		}
		log.Info("ingester_listening", zap.String("addr", ln.Addr().String()))
		if onStart != nil {
			onStart(ln.Addr().String())
		}
		g.Go(func() error { return ing.Serve(gctx, ln) })
		if a := s.Callback.AdminAddr; a != "" {
			aln, err := net.Listen("tcp", a)
			if err != nil {
				return fail(fmt.Errorf("TSFB_CALLBACK_ADMIN_ADDR: listening on %s: %w", a, err))
			}
			log.Info("admin_listening", zap.String("addr", aln.Addr().String()))
			g.Go(func() error { return ing.ServeAdmin(gctx, aln) })
		}
	}
	if has(RoleCorrelator) {
		c, err := callback.NewCorrelator(s.Callback, bus, tr, log)
		if err != nil {
			return fail(err)
		}
		g.Go(func() error { return c.Run(gctx) })
	}
	if has(RoleSweeper) {
		var checker callback.StatusChecker
		if client != nil {
			checker = statusChecker{client}
		}
		sw, err := callback.NewSweeper(s.Callback, bus, tr, checker, log)
		if err != nil {
			return fail(err)
		}
		g.Go(func() error { return sw.Run(gctx) })
	}
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
