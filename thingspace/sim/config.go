package sim

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// Defaults of Config.
const (
	DefaultAddr                  = "127.0.0.1:8089"
	DefaultClientID              = "sim-client"
	DefaultClientSecret          = "sim-secret"
	DefaultUsername              = "sim-user"
	DefaultPassword              = "sim-password"
	DefaultTokenTTL              = time.Hour
	DefaultSessionIdle           = 20 * time.Minute
	DefaultLockoutAfter          = 5
	DefaultMaxDevices            = 100
	DefaultTimeoutDelay          = 35 * time.Second
	DefaultSenders               = 32
	DefaultQueueSize             = 100000
	DefaultCallbackTimeout       = 10 * time.Second
	DefaultCallbackRetryInterval = 5 * time.Minute
	DefaultCallbackMaxSends      = 4
	DefaultCallbackService       = "DeviceProfileService"
	DefaultNonFinalStatus        = "WARNING"
)

// Callback shapes, chosen by Config.CallbackShape.
const (
	// ShapeStandard is model.CallbackBody: ids both at the top and in
	// deviceResponse.deviceProfileResponse.deviceIdentifierCollection.
	ShapeStandard = "standard"
	// ShapePascal spells every key in PascalCase.
	ShapePascal = "pascal"
	// ShapeUpperKind spells kind values in upper case ("EID").
	ShapeUpperKind = "upperkind"
	// ShapeCollection names the device only inside deviceResponse.
	ShapeCollection = "collection"
	// ShapeStringCount sends callbackCount and maxCallbackThreshold as
	// JSON strings.
	ShapeStringCount = "stringcount"
	// ShapeMixed picks one of the shapes above per device.
	ShapeMixed = "mixed"
)

var shapes = []string{ShapeStandard, ShapePascal, ShapeUpperKind, ShapeCollection, ShapeStringCount}

// Config configures the simulator. Ratios are shares from 0 to 1.
type Config struct {
	ClientID     string `env:"TSFB_SIM_CLIENT_ID, default=sim-client"`
	ClientSecret string `env:"TSFB_SIM_CLIENT_SECRET, default=sim-secret"`
	Username     string `env:"TSFB_SIM_USERNAME, default=sim-user"`
	Password     string `env:"TSFB_SIM_PASSWORD, default=sim-password"`

	// TokenTTL is the access token's life from first issue (default 1h).
	TokenTTL time.Duration `env:"TSFB_SIM_TOKEN_TTL, default=1h"`
	// SessionIdle expires a session unused this long (default 20m).
	SessionIdle time.Duration `env:"TSFB_SIM_SESSION_IDLE, default=20m"`
	// LockoutAfter failed logins in a row lock the account (default 5).
	LockoutAfter int `env:"TSFB_SIM_LOCKOUT_AFTER, default=5"`
	// MaxDevices per setfallbackattribute request (default 100).
	MaxDevices int `env:"TSFB_SIM_MAX_DEVICES, default=100"`

	// RateRPS and RateBurst limit the M2M calls other than login and
	// logout; 0 RPS means unlimited. Over the limit: 429 + Retry-After.
	RateRPS   float64 `env:"TSFB_SIM_RATE_RPS, default=0"`
	RateBurst int     `env:"TSFB_SIM_RATE_BURST, default=1"`

	// FailRatio is the share of devices whose callback says FAILED.
	FailRatio float64 `env:"TSFB_SIM_FAIL_RATIO, default=0"`
	// Latency is added to every setfallbackattribute answer.
	Latency time.Duration `env:"TSFB_SIM_LATENCY, default=0s"`
	// ErrorRatio is the share of setfallbackattribute requests answered
	// 500 without being executed.
	ErrorRatio float64 `env:"TSFB_SIM_ERROR_RATIO, default=0"`
	// TimeoutRatio is the share of requests that are executed (callbacks
	// included) but answered only after TimeoutDelay, past the client's
	// timeout.
	TimeoutRatio float64       `env:"TSFB_SIM_TIMEOUT_RATIO, default=0"`
	TimeoutDelay time.Duration `env:"TSFB_SIM_TIMEOUT_DELAY, default=35s"`
	// DropRatio is the share of requests that are executed and whose
	// connection is then closed without an answer.
	DropRatio float64 `env:"TSFB_SIM_DROP_RATIO, default=0"`

	// Senders is the number of callback sender goroutines (default 32)
	// and QueueSize the bound of pending deliveries (default 100000).
	Senders   int `env:"TSFB_SIM_SENDERS, default=32"`
	QueueSize int `env:"TSFB_SIM_QUEUE_SIZE, default=100000"`
	// CallbackTimeout bounds one callback POST (default 10s).
	CallbackTimeout time.Duration `env:"TSFB_SIM_CALLBACK_TIMEOUT, default=10s"`
	// CallbackRetryInterval separates the sends of a callback that was not
	// answered 2xx (default 5m), up to CallbackMaxSends sends (default 4).
	CallbackRetryInterval time.Duration `env:"TSFB_SIM_CALLBACK_RETRY_INTERVAL, default=5m"`
	CallbackMaxSends      int           `env:"TSFB_SIM_CALLBACK_MAX_SENDS, default=4"`
	// CallbackService is the registration that receives the callbacks;
	// without it, the account's first registration by name is used.
	CallbackService string `env:"TSFB_SIM_CALLBACK_SERVICE, default=DeviceProfileService"`

	// DuplicateRatio is the share of devices whose callback is sent twice.
	DuplicateRatio float64 `env:"TSFB_SIM_DUPLICATE_RATIO, default=0"`
	// EarlyCallbacks sends a request's callbacks before its answer.
	EarlyCallbacks bool `env:"TSFB_SIM_EARLY_CALLBACKS, default=false"`
	// OutOfOrder shuffles the callbacks of each request.
	OutOfOrder bool `env:"TSFB_SIM_OUT_OF_ORDER, default=false"`
	// NonFinalRatio is the share of devices that first get a callback with
	// NonFinalStatus (default WARNING), then the final one.
	NonFinalRatio  float64 `env:"TSFB_SIM_NON_FINAL_RATIO, default=0"`
	NonFinalStatus string  `env:"TSFB_SIM_NON_FINAL_STATUS, default=WARNING"`
	// CallbackShape is one of standard, pascal, upperkind, collection,
	// stringcount or mixed (default standard).
	CallbackShape string `env:"TSFB_SIM_CALLBACK_SHAPE, default=standard"`
	// NumericFaultCode sends gateway fault codes as JSON numbers.
	NumericFaultCode bool `env:"TSFB_SIM_NUMERIC_FAULT_CODE, default=false"`
}

// DefaultConfig returns the configuration with every default set.
func DefaultConfig() Config {
	return Config{
		ClientID:              DefaultClientID,
		ClientSecret:          DefaultClientSecret,
		Username:              DefaultUsername,
		Password:              DefaultPassword,
		TokenTTL:              DefaultTokenTTL,
		SessionIdle:           DefaultSessionIdle,
		LockoutAfter:          DefaultLockoutAfter,
		MaxDevices:            DefaultMaxDevices,
		RateBurst:             1,
		TimeoutDelay:          DefaultTimeoutDelay,
		Senders:               DefaultSenders,
		QueueSize:             DefaultQueueSize,
		CallbackTimeout:       DefaultCallbackTimeout,
		CallbackRetryInterval: DefaultCallbackRetryInterval,
		CallbackMaxSends:      DefaultCallbackMaxSends,
		CallbackService:       DefaultCallbackService,
		NonFinalStatus:        DefaultNonFinalStatus,
		CallbackShape:         ShapeStandard,
	}
}

// withDefaults fills zero fields, so tests can set only what they need.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&c.ClientID, d.ClientID)
	set(&c.ClientSecret, d.ClientSecret)
	set(&c.Username, d.Username)
	set(&c.Password, d.Password)
	set(&c.CallbackService, d.CallbackService)
	set(&c.NonFinalStatus, d.NonFinalStatus)
	set(&c.CallbackShape, d.CallbackShape)
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setD(&c.TokenTTL, d.TokenTTL)
	setD(&c.SessionIdle, d.SessionIdle)
	setD(&c.TimeoutDelay, d.TimeoutDelay)
	setD(&c.CallbackTimeout, d.CallbackTimeout)
	setD(&c.CallbackRetryInterval, d.CallbackRetryInterval)
	setI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setI(&c.LockoutAfter, d.LockoutAfter)
	setI(&c.MaxDevices, d.MaxDevices)
	setI(&c.RateBurst, d.RateBurst)
	setI(&c.Senders, d.Senders)
	setI(&c.QueueSize, d.QueueSize)
	setI(&c.CallbackMaxSends, d.CallbackMaxSends)
	return c
}

// Validate checks the configuration; errors name the flag.
func (c Config) Validate() error {
	var errs []error
	bad := func(name, format string, a ...any) {
		errs = append(errs, fmt.Errorf("sim: --%s: "+format, append([]any{name}, a...)...))
	}
	for _, r := range []struct {
		name string
		v    float64
	}{
		{"fail-ratio", c.FailRatio}, {"error-ratio", c.ErrorRatio},
		{"timeout-ratio", c.TimeoutRatio}, {"drop-ratio", c.DropRatio},
		{"duplicate-ratio", c.DuplicateRatio}, {"non-final-ratio", c.NonFinalRatio},
	} {
		if r.v < 0 || r.v > 1 {
			bad(r.name, "must be between 0 and 1, got %g", r.v)
		}
	}
	if c.RateRPS < 0 {
		bad("rate-rps", "must not be negative, got %g", c.RateRPS)
	}
	if c.RateBurst < 1 {
		bad("rate-burst", "must be at least 1, got %d", c.RateBurst)
	}
	if c.Senders < 1 || c.Senders > 1024 {
		bad("senders", "must be 1 to 1024, got %d", c.Senders)
	}
	if c.QueueSize < 1 {
		bad("queue-size", "must be at least 1, got %d", c.QueueSize)
	}
	if c.CallbackMaxSends < 1 {
		bad("callback-max-sends", "must be at least 1, got %d", c.CallbackMaxSends)
	}
	if c.MaxDevices < 1 {
		bad("max-devices", "must be at least 1, got %d", c.MaxDevices)
	}
	if c.Latency < 0 {
		bad("latency", "must not be negative, got %s", c.Latency)
	}
	ok := c.CallbackShape == ShapeMixed
	for _, s := range shapes {
		ok = ok || c.CallbackShape == s
	}
	if !ok {
		bad("callback-shape", "%q is not one of standard, pascal, upperkind, collection, "+
			"stringcount, mixed", c.CallbackShape)
	}
	return errors.Join(errs...)
}

// RegisterFlags binds every field of c to a flag of fs, with c's current
// values as the defaults (start from DefaultConfig). The listen address is
// the caller's: see DefaultAddr.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.ClientID, "client-id", c.ClientID, "OAuth2 client id the simulator accepts")
	fs.StringVar(&c.ClientSecret, "client-secret", c.ClientSecret, "OAuth2 client secret the simulator accepts")
	fs.StringVar(&c.Username, "username", c.Username, "M2M login username the simulator accepts")
	fs.StringVar(&c.Password, "password", c.Password, "M2M login password the simulator accepts")
	fs.DurationVar(&c.TokenTTL, "token-ttl", c.TokenTTL, "access token life from first issue")
	fs.DurationVar(&c.SessionIdle, "session-idle", c.SessionIdle, "session expiry after this long unused")
	fs.IntVar(&c.LockoutAfter, "lockout-after", c.LockoutAfter, "failed logins in a row that lock the account")
	fs.IntVar(&c.MaxDevices, "max-devices", c.MaxDevices, "most devices per setfallbackattribute request")
	fs.Float64Var(&c.RateRPS, "rate-rps", c.RateRPS, "M2M requests per second before 429 (0 = unlimited)")
	fs.IntVar(&c.RateBurst, "rate-burst", c.RateBurst, "burst of the rate limit")
	fs.Float64Var(&c.FailRatio, "fail-ratio", c.FailRatio, "share of devices whose callback is FAILED (0-1)")
	fs.DurationVar(&c.Latency, "latency", c.Latency, "latency added to each setfallbackattribute answer")
	fs.Float64Var(&c.ErrorRatio, "error-ratio", c.ErrorRatio, "share of requests answered 500, not executed (0-1)")
	fs.Float64Var(&c.TimeoutRatio, "timeout-ratio", c.TimeoutRatio,
		"share of requests executed but answered only after --timeout-delay (0-1)")
	fs.DurationVar(&c.TimeoutDelay, "timeout-delay", c.TimeoutDelay, "answer delay of --timeout-ratio requests")
	fs.Float64Var(&c.DropRatio, "drop-ratio", c.DropRatio,
		"share of requests executed whose connection is then dropped (0-1)")
	fs.IntVar(&c.Senders, "senders", c.Senders, "callback sender goroutines")
	fs.IntVar(&c.QueueSize, "queue-size", c.QueueSize, "bound of queued callback deliveries")
	fs.DurationVar(&c.CallbackTimeout, "callback-timeout", c.CallbackTimeout, "timeout of one callback POST")
	fs.DurationVar(&c.CallbackRetryInterval, "callback-retry-interval", c.CallbackRetryInterval,
		"wait before resending a callback not answered 2xx")
	fs.IntVar(&c.CallbackMaxSends, "callback-max-sends", c.CallbackMaxSends, "sends of a callback, first included")
	fs.StringVar(&c.CallbackService, "callback-service", c.CallbackService,
		"registered service that receives the callbacks (else the account's first)")
	fs.Float64Var(&c.DuplicateRatio, "duplicate-ratio", c.DuplicateRatio, "share of devices whose callback is sent twice (0-1)")
	fs.BoolVar(&c.EarlyCallbacks, "early-callbacks", c.EarlyCallbacks, "send callbacks before the submit answer")
	fs.BoolVar(&c.OutOfOrder, "out-of-order", c.OutOfOrder, "shuffle the callbacks of each request")
	fs.Float64Var(&c.NonFinalRatio, "non-final-ratio", c.NonFinalRatio,
		"share of devices that first get a --non-final-status callback (0-1)")
	fs.StringVar(&c.NonFinalStatus, "non-final-status", c.NonFinalStatus, "status word of non-final callbacks")
	fs.StringVar(&c.CallbackShape, "callback-shape", c.CallbackShape,
		"callback JSON shape: standard, pascal, upperkind, collection, stringcount or mixed")
	fs.BoolVar(&c.NumericFaultCode, "numeric-fault-code", c.NumericFaultCode, "send gateway fault codes as JSON numbers")
}
