package callback

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tsfallback/tsfallback/config"
)

// Defaults of Config.
const (
	DefaultAddr          = ":8080"
	DefaultMaxBody       = 64 << 10
	DefaultUnmatchedWait = 30 * time.Second
	DefaultTimeout       = 30 * time.Minute
	DefaultBatch         = 256
	DefaultSweepInterval = time.Minute
	// DefaultMaxInFlight bounds the callbacks being handled at once; past
	// it the ingester answers 503 and ThingSpace retries later.
	DefaultMaxInFlight = 512
	// MaxBodyLimit caps TSFB_CALLBACK_MAX_BODY: a callback is a few hundred
	// bytes, and a JetStream message is at most 1 MB by default.
	MaxBodyLimit = 1 << 20
	// MaxBatch caps TSFB_CALLBACK_BATCH.
	MaxBatch = 2048
)

// Config is the callback ingester's, correlator's and sweeper's part of the
// configuration.
type Config struct {
	// Addr is the ingester's listen address (default ":8080").
	Addr string `env:"TSFB_CALLBACK_ADDR, default=:8080"`
	// Username and Password are the credentials registered with ThingSpace,
	// which it echoes in each callback body (also as TSFB_..._FILE).
	Username config.Secret `env:"TSFB_CALLBACK_USERNAME"`
	Password config.Secret `env:"TSFB_CALLBACK_PASSWORD"`
	// MaxBody is the largest callback body accepted, in bytes (default
	// 65536).
	MaxBody int64 `env:"TSFB_CALLBACK_MAX_BODY, default=65536"`
	// UnmatchedWait is how long a callback whose requestId no record knows
	// yet is retried before it is reported unmatched (default 30s): the
	// callback can beat the worker's record.
	UnmatchedWait time.Duration `env:"TSFB_CALLBACK_UNMATCHED_WAIT, default=30s"`
	// Timeout is how long after its request a device may stay without a
	// final callback before the sweeper times it out (default 30m).
	Timeout time.Duration `env:"TSFB_CALLBACK_TIMEOUT, default=30m"`
	// SweepInterval is how often the sweeper looks (default 1m).
	SweepInterval time.Duration `env:"TSFB_CALLBACK_SWEEP_INTERVAL, default=1m"`
	// Batch is the most callbacks the correlator handles at once (default
	// 256).
	Batch int `env:"TSFB_CALLBACK_BATCH, default=256"`
	// MaxInFlight is the most callback requests handled at once (default
	// 512).
	MaxInFlight int `env:"TSFB_CALLBACK_MAX_IN_FLIGHT, default=512"`
	// Allow is an optional comma-separated list of CIDRs (or addresses)
	// that may post callbacks; empty allows every source.
	Allow string `env:"TSFB_CALLBACK_ALLOW"`
	// TrustedProxies lists the CIDRs whose X-Forwarded-For is believed
	// when checking Allow; empty trusts no proxy.
	TrustedProxies string `env:"TSFB_CALLBACK_TRUSTED_PROXIES"`
}

// LoadConfig reads Config from the environment (secrets also from
// TSFB_..._FILE) and validates it.
func LoadConfig(ctx context.Context) (Config, error) {
	var c Config
	if err := config.Load(ctx, config.Lookuper(), &c); err != nil {
		return c, fmt.Errorf("reading callback configuration: %w", err)
	}
	return c, c.Validate()
}

// Defaulted returns a copy with zero values replaced by the defaults, for
// callers that build a Config in code.
func (c Config) Defaulted() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.UnmatchedWait == 0 {
		c.UnmatchedWait = DefaultUnmatchedWait
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.SweepInterval == 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	return c
}

// Validate names the variable of the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("TSFB_CALLBACK_ADDR: empty, want host:port")
	case c.Username == "":
		return fmt.Errorf("TSFB_CALLBACK_USERNAME: empty, want the username registered with ThingSpace")
	case c.Password == "":
		return fmt.Errorf("TSFB_CALLBACK_PASSWORD: empty, want the password registered with ThingSpace")
	case c.MaxBody < 1 || c.MaxBody > MaxBodyLimit:
		return fmt.Errorf("TSFB_CALLBACK_MAX_BODY: %d, want 1 to %d bytes", c.MaxBody, MaxBodyLimit)
	case c.UnmatchedWait <= 0:
		return fmt.Errorf("TSFB_CALLBACK_UNMATCHED_WAIT: %s, want a positive duration", c.UnmatchedWait)
	case c.Timeout <= 0:
		return fmt.Errorf("TSFB_CALLBACK_TIMEOUT: %s, want a positive duration", c.Timeout)
	case c.SweepInterval <= 0:
		return fmt.Errorf("TSFB_CALLBACK_SWEEP_INTERVAL: %s, want a positive duration", c.SweepInterval)
	case c.Batch < 1 || c.Batch > MaxBatch:
		return fmt.Errorf("TSFB_CALLBACK_BATCH: %d, want 1 to %d", c.Batch, MaxBatch)
	case c.MaxInFlight < 1:
		return fmt.Errorf("TSFB_CALLBACK_MAX_IN_FLIGHT: %d, want 1 or more", c.MaxInFlight)
	}
	if _, err := parsePrefixes(c.Allow); err != nil {
		return fmt.Errorf("TSFB_CALLBACK_ALLOW: %w", err)
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		return fmt.Errorf("TSFB_CALLBACK_TRUSTED_PROXIES: %w", err)
	}
	return nil
}

// String renders the configuration for the start-up log; the credentials
// are Secrets and print redacted.
func (c Config) String() string {
	return fmt.Sprintf("addr=%s username=%s password=%s max_body=%d unmatched_wait=%s "+
		"timeout=%s sweep_interval=%s batch=%d max_in_flight=%d allow=%q trusted_proxies=%q",
		c.Addr, c.Username, c.Password, c.MaxBody, c.UnmatchedWait, c.Timeout,
		c.SweepInterval, c.Batch, c.MaxInFlight, c.Allow, c.TrustedProxies)
}

// parsePrefixes reads a comma-separated list of CIDRs or single addresses.
func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if !strings.Contains(s, "/") {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR nor an address", s)
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR: %w", s, err)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}
