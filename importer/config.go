package importer

import (
	"fmt"
	"time"
)

// Defaults of Config.
const (
	DefaultMaxPending = 64
	DefaultAckTimeout = 30 * time.Second
)

// Config tunes publishing; everything about the input is in Options.
type Config struct {
	// MaxPending bounds the job publishes awaiting their ack. Default 64.
	MaxPending int `env:"TSFB_IMPORT_MAX_PENDING, default=64"`
	// AckTimeout is how long one job's ack may take before the import
	// stops. Default 30s.
	AckTimeout time.Duration `env:"TSFB_IMPORT_ACK_TIMEOUT, default=30s"`
	// DedupMemoryMB bounds the memory of the check for devices repeated
	// within a run, in MiB; beyond it the check spills to a temporary
	// file in TMPDIR. Default 32.
	DedupMemoryMB int `env:"TSFB_IMPORT_DEDUP_MEMORY_MB, default=32"`
}

// Defaulted returns a copy with zero values replaced by the defaults, for
// callers that build a Config in code.
func (c Config) Defaulted() Config {
	if c.MaxPending == 0 {
		c.MaxPending = DefaultMaxPending
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.DedupMemoryMB == 0 {
		c.DedupMemoryMB = DefaultDedupMemoryMB
	}
	return c
}

// Validate names the variable of the first bad setting.
func (c Config) Validate() error {
	switch {
	case c.MaxPending < 1 || c.MaxPending > 4096:
		return fmt.Errorf("TSFB_IMPORT_MAX_PENDING: %d, want 1 to 4096", c.MaxPending)
	case c.AckTimeout <= 0:
		return fmt.Errorf("TSFB_IMPORT_ACK_TIMEOUT: %s, want a positive duration", c.AckTimeout)
	case c.DedupMemoryMB < 1 || c.DedupMemoryMB > 1<<20:
		return fmt.Errorf("TSFB_IMPORT_DEDUP_MEMORY_MB: %d, want 1 to %d", c.DedupMemoryMB, 1<<20)
	}
	return nil
}
