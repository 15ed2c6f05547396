package cli

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/tsfallback/tsfallback/callback"
	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/importer"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/ratelimit"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/worker"
)

// Settings is the whole configuration, one struct per package.
type Settings struct {
	Log        LogConfig
	Queue      queue.Config
	ThingSpace thingspace.Config
	Rate       ratelimit.Config
	Worker     worker.Config
	Callback   callback.Config
	Import     importer.Config

	// replaced are the variables set to a value that a package would
	// replace by its default (see config.Replaced).
	replaced map[string]error
}

// loadSettings reads every TSFB_ variable. It validates nothing beyond the
// syntax and refuses variables set to a value that would be replaced by
// the default: each command validates the parts it uses.
func loadSettings(ctx context.Context, env Env) (Settings, error) {
	s, err := loadSettingsLenient(ctx, env)
	if err != nil {
		return s, err
	}
	return s, s.replacedErr(nil)
}

// loadSettingsLenient is loadSettings for a caller that reports the
// replaced variables with its own checks (see replacedErr).
func loadSettingsLenient(ctx context.Context, env Env) (Settings, error) {
	var s Settings
	l := env.lookuper()
	if err := config.Load(ctx, l, &s); err != nil {
		return s, err
	}
	s.replaced = config.Replaced(&s, l)
	return s, nil
}

// replacedErr joins the errors of the replaced variables that none of
// named mentions already, in a stable order.
func (s Settings) replacedErr(named []error) error {
	var names []string
	for name := range s.replaced {
		names = append(names, name)
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		if !slices.ContainsFunc(named, func(e error) bool { return strings.Contains(e.Error(), name+":") }) {
			errs = append(errs, s.replaced[name])
		}
	}
	return errors.Join(errs...)
}
