package ratelimit

import (
	"context"
	"fmt"
	"math"

	"github.com/tsfallback/tsfallback/config"
)

// Defaults of Config.
const (
	DefaultRPS   = 10.0
	DefaultBurst = 10
)

// Config is the deployment's request budget. Every process of a deployment
// must be given the same values: each takes its share of them.
type Config struct {
	// RPS is the rate of API requests per second for the whole deployment
	// (default 10).
	RPS float64 `env:"TSFB_RATE_RPS, default=10"`
	// Burst is the most requests sent at once by the whole deployment
	// (default 10).
	Burst int `env:"TSFB_RATE_BURST, default=10"`
}

// LoadConfig reads Config from the environment and validates it.
func LoadConfig(ctx context.Context) (Config, error) {
	var c Config
	if err := config.Load(ctx, config.Lookuper(), &c); err != nil {
		return c, fmt.Errorf("reading rate limit configuration: %w", err)
	}
	return c, c.Validate()
}

// Defaulted returns a copy with zero values replaced by the defaults, for
// callers that build a Config in code.
func (c Config) Defaulted() Config {
	if c.RPS == 0 {
		c.RPS = DefaultRPS
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	return c
}

// Validate names the variable of the first bad setting.
func (c Config) Validate() error {
	switch {
	case !(c.RPS > 0) || math.IsInf(c.RPS, 1): // also refuses NaN
		return fmt.Errorf("TSFB_RATE_RPS: %v, want more than 0 requests per second", c.RPS)
	case c.Burst < 1:
		return fmt.Errorf("TSFB_RATE_BURST: %d, want 1 or more", c.Burst)
	}
	return nil
}
