package thingspace

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/tsfallback/tsfallback/config"
)

// ProductionBaseURL is Verizon's API base. It is deliberately not the
// default of TSFB_THINGSPACE_URL: a deployment names its target on purpose,
// so a test or a demo never reaches the real service by accident.
const ProductionBaseURL = "https://thingspace.verizon.com/api"

// Defaults of Config.
const (
	DefaultRequestTimeout = 30 * time.Second
	DefaultMaxDevices     = 100
	DefaultLoginAttempts  = 3
	DefaultLoginBackoff   = 2 * time.Second
	DefaultTokenMargin    = 2 * time.Minute
	// MaxLoginAttempts stays below the five failed logins that lock the
	// account, leaving room for a person to try once.
	MaxLoginAttempts = 4
)

// Config configures the client. Every secret can also be read from a file
// named by the same variable with a _FILE suffix (see LoadConfig).
type Config struct {
	// BaseURL is the API base, ending in /api. Required.
	BaseURL string `env:"TSFB_THINGSPACE_URL"`
	// ClientID and ClientSecret are the OAuth2 application key and secret.
	ClientID     string        `env:"TSFB_THINGSPACE_CLIENT_ID"`
	ClientSecret config.Secret `env:"TSFB_THINGSPACE_CLIENT_SECRET"`
	// Username and Password are the M2M session credentials.
	Username string        `env:"TSFB_THINGSPACE_USERNAME"`
	Password config.Secret `env:"TSFB_THINGSPACE_PASSWORD"`
	// RequestTimeout bounds each HTTP exchange (default 30s).
	RequestTimeout time.Duration `env:"TSFB_THINGSPACE_REQUEST_TIMEOUT, default=30s"`
	// MaxDevices is the most devices sent in one setfallbackattribute
	// request (default 100).
	MaxDevices int `env:"TSFB_THINGSPACE_MAX_DEVICES, default=100"`
	// LoginAttempts is the most failed logins in a row before the client
	// stops (default 3, at most 4: five lock the account).
	LoginAttempts int `env:"TSFB_THINGSPACE_LOGIN_ATTEMPTS, default=3"`
	// LoginBackoff is the wait after the first failed login, doubled after
	// each further one (default 2s).
	LoginBackoff time.Duration `env:"TSFB_THINGSPACE_LOGIN_BACKOFF, default=2s"`
	// TokenMargin renews the access token this long before it expires
	// (default 2m), so that no call carries a token about to lapse.
	TokenMargin time.Duration `env:"TSFB_THINGSPACE_TOKEN_MARGIN, default=2m"`
}

// LoadConfig reads Config from the environment, each variable also from
// the file named by its _FILE variable, and validates it.
func LoadConfig(ctx context.Context) (Config, error) {
	return loadConfig(ctx, config.Lookuper())
}

func loadConfig(ctx context.Context, l envconfig.Lookuper) (Config, error) {
	var c Config
	if err := config.Load(ctx, config.FileLookuper(l), &c); err != nil {
		return c, fmt.Errorf("reading thingspace config: %w", err)
	}
	return c, c.Validate()
}

// Defaulted returns a copy with zero fields set to their defaults, for
// callers that build a Config in code.
func (c Config) Defaulted() Config {
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.MaxDevices == 0 {
		c.MaxDevices = DefaultMaxDevices
	}
	if c.LoginAttempts == 0 {
		c.LoginAttempts = DefaultLoginAttempts
	}
	if c.LoginBackoff == 0 {
		c.LoginBackoff = DefaultLoginBackoff
	}
	if c.TokenMargin == 0 {
		c.TokenMargin = DefaultTokenMargin
	}
	return c
}

// Validate checks the configuration; errors name the variable.
func (c Config) Validate() error {
	var errs []error
	bad := func(env, format string, a ...any) {
		errs = append(errs, fmt.Errorf("thingspace: %s: "+format, append([]any{env}, a...)...))
	}
	if c.BaseURL == "" {
		bad("TSFB_THINGSPACE_URL", "required (production is %s)", ProductionBaseURL)
	} else if u, err := url.Parse(c.BaseURL); err != nil || u.Host == "" ||
		(u.Scheme != "http" && u.Scheme != "https") {
		bad("TSFB_THINGSPACE_URL", "%q is not an http(s) URL", c.BaseURL)
	}
	for _, f := range []struct{ env, v string }{
		{"TSFB_THINGSPACE_CLIENT_ID", c.ClientID},
		{"TSFB_THINGSPACE_CLIENT_SECRET", c.ClientSecret.Reveal()},
		{"TSFB_THINGSPACE_USERNAME", c.Username},
		{"TSFB_THINGSPACE_PASSWORD", c.Password.Reveal()},
	} {
		if f.v == "" {
			bad(f.env, "required")
		}
	}
	if c.RequestTimeout <= 0 {
		bad("TSFB_THINGSPACE_REQUEST_TIMEOUT", "must be above zero, got %s", c.RequestTimeout)
	}
	if c.MaxDevices < 1 || c.MaxDevices > 10000 {
		bad("TSFB_THINGSPACE_MAX_DEVICES", "must be 1 to 10000, got %d", c.MaxDevices)
	}
	if c.LoginAttempts < 1 || c.LoginAttempts > MaxLoginAttempts {
		bad("TSFB_THINGSPACE_LOGIN_ATTEMPTS", "must be 1 to %d, got %d", MaxLoginAttempts, c.LoginAttempts)
	}
	if c.LoginBackoff < 0 {
		bad("TSFB_THINGSPACE_LOGIN_BACKOFF", "must not be negative, got %s", c.LoginBackoff)
	}
	if c.TokenMargin < 0 {
		bad("TSFB_THINGSPACE_TOKEN_MARGIN", "must not be negative, got %s", c.TokenMargin)
	}
	return errors.Join(errs...)
}
