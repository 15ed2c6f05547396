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

	// DefaultStoreTimeout bounds the JetStream publish of one callback:
	// past it the answer is 503 and ThingSpace retries, rather than holding
	// the connection while NATS is away.
	DefaultStoreTimeout = 3 * time.Second
	// DefaultReadHeaderTimeout stops slowloris clients that trickle headers.
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultReadTimeout bounds reading a whole request, body included: a
	// callback is a few hundred bytes, and a client that holds its body
	// back also holds one of MaxInFlight slots.
	DefaultReadTimeout = 10 * time.Second
	// DefaultWriteTimeout covers the body read, the store and the answer.
	DefaultWriteTimeout = 15 * time.Second
	// DefaultIdleTimeout frees kept-alive connections that carry nothing.
	DefaultIdleTimeout = 60 * time.Second
	// DefaultMaxConns bounds the connections open on the callback port:
	// every open connection costs a goroutine and a buffer, so past it new
	// clients wait in the kernel's accept queue instead.
	DefaultMaxConns = 2048
	// DefaultAdminAllow is who may read /metrics and /v1/jobs on the
	// callback port when there is no separate admin listener.
	DefaultAdminAllow = "127.0.0.0/8,::1"
	// AdminAllowNone refuses the admin routes on the callback port.
	AdminAllowNone = "none"
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
	// when checking Allow and AdminAllow; empty trusts no proxy.
	TrustedProxies string `env:"TSFB_CALLBACK_TRUSTED_PROXIES"`

	// AdminAddr is an optional second listener for the operator's routes
	// (/metrics, /v1/jobs/{jobId}, /healthz, /readyz). When it is set the
	// callback port serves only the callback and the probes; when empty
	// (the default) the callback port also serves the admin routes, to
	// AdminAllow only.
	AdminAddr string `env:"TSFB_CALLBACK_ADMIN_ADDR"`
	// AdminAllow lists the CIDRs that may read the admin routes on the
	// callback port (default loopback, "127.0.0.0/8,::1"; "none" refuses
	// every source). It does not apply to AdminAddr, whose address is its
	// protection.
	AdminAllow string `env:"TSFB_CALLBACK_ADMIN_ALLOW, default=127.0.0.0/8,::1"`

	// StoreTimeout bounds storing one callback in JetStream (default 3s).
	StoreTimeout time.Duration `env:"TSFB_CALLBACK_STORE_TIMEOUT, default=3s"`
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout are the
	// HTTP server's timeouts (defaults 5s, 10s, 15s, 60s).
	ReadHeaderTimeout time.Duration `env:"TSFB_CALLBACK_READ_HEADER_TIMEOUT, default=5s"`
	ReadTimeout       time.Duration `env:"TSFB_CALLBACK_READ_TIMEOUT, default=10s"`
	WriteTimeout      time.Duration `env:"TSFB_CALLBACK_WRITE_TIMEOUT, default=15s"`
	IdleTimeout       time.Duration `env:"TSFB_CALLBACK_IDLE_TIMEOUT, default=60s"`
	// MaxConns is the most connections open at once on each listener
	// (default 2048).
	MaxConns int `env:"TSFB_CALLBACK_MAX_CONNS, default=2048"`
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
	if c.AdminAllow == "" {
		c.AdminAllow = DefaultAdminAllow
	}
	if c.StoreTimeout == 0 {
		c.StoreTimeout = DefaultStoreTimeout
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultReadTimeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
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
	case c.MaxConns < 1:
		return fmt.Errorf("TSFB_CALLBACK_MAX_CONNS: %d, want 1 or more", c.MaxConns)
	case c.StoreTimeout <= 0:
		return fmt.Errorf("TSFB_CALLBACK_STORE_TIMEOUT: %s, want a positive duration", c.StoreTimeout)
	case c.ReadHeaderTimeout <= 0:
		return fmt.Errorf("TSFB_CALLBACK_READ_HEADER_TIMEOUT: %s, want a positive duration", c.ReadHeaderTimeout)
	case c.ReadTimeout <= 0:
		return fmt.Errorf("TSFB_CALLBACK_READ_TIMEOUT: %s, want a positive duration", c.ReadTimeout)
	case c.IdleTimeout <= 0:
		return fmt.Errorf("TSFB_CALLBACK_IDLE_TIMEOUT: %s, want a positive duration", c.IdleTimeout)
	case c.WriteTimeout <= c.StoreTimeout:
		// The write deadline runs from the end of the headers, so it must
		// leave room for the store and the 503 that follows its time-out.
		return fmt.Errorf("TSFB_CALLBACK_WRITE_TIMEOUT: %s, want more than TSFB_CALLBACK_STORE_TIMEOUT (%s)",
			c.WriteTimeout, c.StoreTimeout)
	}
	if _, err := parsePrefixes(c.Allow); err != nil {
		return fmt.Errorf("TSFB_CALLBACK_ALLOW: %w", err)
	}
	if _, err := parsePrefixes(c.TrustedProxies); err != nil {
		return fmt.Errorf("TSFB_CALLBACK_TRUSTED_PROXIES: %w", err)
	}
	if _, err := adminPrefixes(c.AdminAllow); err != nil {
		return fmt.Errorf("TSFB_CALLBACK_ADMIN_ALLOW: %w", err)
	}
	if c.AdminAddr != "" && c.AdminAddr == c.Addr {
		return fmt.Errorf("TSFB_CALLBACK_ADMIN_ADDR: %s is also TSFB_CALLBACK_ADDR, want another address", c.AdminAddr)
	}
	return nil
}

// adminPrefixes reads AdminAllow: a list like Allow's, or "none", which
// gives an empty list that matches nothing.
func adminPrefixes(list string) ([]netip.Prefix, error) {
	if strings.EqualFold(strings.TrimSpace(list), AdminAllowNone) {
		return []netip.Prefix{}, nil
	}
	ps, err := parsePrefixes(list)
	if err == nil && len(ps) == 0 {
		err = fmt.Errorf("empty, want CIDRs or %q", AdminAllowNone)
	}
	return ps, err
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
