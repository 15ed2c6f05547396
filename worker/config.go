package worker

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/model"
)

// Defaults of Config.
const (
	DefaultConcurrency     = 8
	DefaultChunkSize       = 100
	DefaultMaxJobDevices   = model.DefaultMaxJobDevices
	DefaultConsumer        = "fallback-workers"
	DefaultMaxDeliver      = 10
	DefaultAckWait         = 30 * time.Second
	DefaultShutdownTimeout = 20 * time.Second
)

// Bounds of Config.
const (
	// MaxChunkSize is the largest request the worker will build; the
	// ThingSpace client has its own, usually lower, limit.
	MaxChunkSize = 10000
	// MinAckWait leaves room for the in-progress acks sent every third of
	// it.
	MinAckWait = 3 * time.Second
)

// Config configures the worker.
type Config struct {
	// Concurrency is the number of jobs processed at once by this process
	// (default 8).
	Concurrency int `env:"TSFB_WORKER_CONCURRENCY, default=8"`
	// ChunkSize is the most devices sent in one API request (default 100).
	ChunkSize int `env:"TSFB_CHUNK_SIZE, default=100"`
	// MaxJobDevices is the most devices a job may hold (default 1000).
	MaxJobDevices int `env:"TSFB_MAX_JOB_DEVICES, default=1000"`
	// Consumer is the durable consumer name shared by every worker
	// (default fallback-workers).
	Consumer string `env:"TSFB_WORKER_CONSUMER, default=fallback-workers"`
	// MaxDeliver is how many times a job is delivered before the worker
	// gives up on it (default 10).
	MaxDeliver int `env:"TSFB_WORKER_MAX_DELIVER, default=10"`
	// AckWait is how long a job may go without an acknowledgement before
	// it is delivered again (default 30s); in-progress acks renew it.
	AckWait time.Duration `env:"TSFB_WORKER_ACK_WAIT, default=30s"`
	// ShutdownTimeout is how long jobs in flight may run on after a stop
	// before they are cancelled and left for redelivery (default 20s).
	ShutdownTimeout time.Duration `env:"TSFB_WORKER_SHUTDOWN_TIMEOUT, default=20s"`
}

// LoadConfig reads Config from the environment and validates it.
func LoadConfig(ctx context.Context) (Config, error) {
	var c Config
	if err := config.Load(ctx, config.Lookuper(), &c); err != nil {
		return c, fmt.Errorf("reading worker configuration: %w", err)
	}
	return c, c.Validate()
}

// Defaulted returns a copy with zero values replaced by the defaults, for
// callers that build a Config in code.
func (c Config) Defaulted() Config {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.ChunkSize == 0 {
		c.ChunkSize = DefaultChunkSize
	}
	if c.MaxJobDevices == 0 {
		c.MaxJobDevices = DefaultMaxJobDevices
	}
	if c.Consumer == "" {
		c.Consumer = DefaultConsumer
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	return c
}

var consumerName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate names the variable of the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.Concurrency < 1 || c.Concurrency > 1024:
		return fmt.Errorf("TSFB_WORKER_CONCURRENCY: %d, want 1 to 1024", c.Concurrency)
	case c.ChunkSize < 1 || c.ChunkSize > MaxChunkSize:
		return fmt.Errorf("TSFB_CHUNK_SIZE: %d, want 1 to %d", c.ChunkSize, MaxChunkSize)
	case c.MaxJobDevices < 1:
		return fmt.Errorf("TSFB_MAX_JOB_DEVICES: %d, want 1 or more", c.MaxJobDevices)
	case !consumerName.MatchString(c.Consumer):
		return fmt.Errorf("TSFB_WORKER_CONSUMER: %q, want 1 to 64 of [A-Za-z0-9_-]", c.Consumer)
	case c.MaxDeliver < 1:
		return fmt.Errorf("TSFB_WORKER_MAX_DELIVER: %d, want 1 or more", c.MaxDeliver)
	case c.AckWait < MinAckWait:
		return fmt.Errorf("TSFB_WORKER_ACK_WAIT: %s, want at least %s", c.AckWait, MinAckWait)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("TSFB_WORKER_SHUTDOWN_TIMEOUT: %s, want a positive duration", c.ShutdownTimeout)
	}
	return nil
}
