package cli

import (
	"context"

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
}

// loadSettings reads every TSFB_ variable. It validates nothing beyond the
// syntax: each command validates the parts it uses.
func loadSettings(ctx context.Context, env Env) (Settings, error) {
	var s Settings
	err := config.Load(ctx, env.lookuper(), &s)
	return s, err
}
