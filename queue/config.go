package queue

import (
	"fmt"
	"time"

	"github.com/tsfallback/tsfallback/config"
)

// Defaults of Config.
const (
	DefaultURL             = "nats://127.0.0.1:4222"
	DefaultEmbeddedListen  = "127.0.0.1:4222"
	DefaultDataDir         = "./data"
	DefaultReplicas        = 1
	DefaultResultsMaxAge   = 7 * 24 * time.Hour
	DefaultCallbacksMaxAge = 7 * 24 * time.Hour
	DefaultDuplicateWindow = 2 * time.Minute
	DefaultConnectTimeout  = 5 * time.Second
)

// Config is the NATS part of the configuration.
type Config struct {
	// URL lists NATS servers, comma-separated. For serve and demo, empty
	// means an embedded server; for other commands, DefaultURL.
	URL string `env:"TSFB_NATS_URL"`
	// Replicas of every stream and bucket created (1, or 3 on a cluster).
	Replicas int `env:"TSFB_NATS_REPLICAS, default=1"`
	// DataDir is the embedded server's store.
	DataDir string `env:"TSFB_DATA_DIR, default=./data"`
	// EmbeddedListen is where the embedded server listens, so that the
	// other commands and the nats CLI reach it.
	EmbeddedListen string `env:"TSFB_EMBEDDED_LISTEN, default=127.0.0.1:4222"`
	// ResultsMaxAge is how long result events are kept.
	ResultsMaxAge time.Duration `env:"TSFB_RESULTS_MAX_AGE, default=168h"`
	// CallbacksMaxAge is how long raw callbacks are kept.
	CallbacksMaxAge time.Duration `env:"TSFB_CALLBACKS_MAX_AGE, default=168h"`
	// DuplicateWindow is the streams' Nats-Msg-Id window. It covers
	// redeliveries; ThingSpace's slow resends are deduplicated in KV.
	DuplicateWindow time.Duration `env:"TSFB_DUPLICATE_WINDOW, default=2m"`
	// Credentials for a secured NATS deployment (optional).
	CredsFile string        `env:"TSFB_NATS_CREDS_FILE"`
	User      string        `env:"TSFB_NATS_USER"`
	Password  config.Secret `env:"TSFB_NATS_PASSWORD"`
}

// Defaulted returns a copy with zero values replaced by the defaults, for
// callers that build a Config in code.
func (c Config) Defaulted() Config {
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.EmbeddedListen == "" {
		c.EmbeddedListen = DefaultEmbeddedListen
	}
	if c.ResultsMaxAge == 0 {
		c.ResultsMaxAge = DefaultResultsMaxAge
	}
	if c.CallbacksMaxAge == 0 {
		c.CallbacksMaxAge = DefaultCallbacksMaxAge
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = DefaultDuplicateWindow
	}
	return c
}

// Validate names the variable of the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("TSFB_NATS_REPLICAS: %d, want 1 to 5", c.Replicas)
	case c.ResultsMaxAge <= 0:
		return fmt.Errorf("TSFB_RESULTS_MAX_AGE: %s, want a positive duration", c.ResultsMaxAge)
	case c.CallbacksMaxAge <= 0:
		return fmt.Errorf("TSFB_CALLBACKS_MAX_AGE: %s, want a positive duration", c.CallbacksMaxAge)
	case c.DuplicateWindow <= 0:
		return fmt.Errorf("TSFB_DUPLICATE_WINDOW: %s, want a positive duration", c.DuplicateWindow)
	}
	return nil
}
