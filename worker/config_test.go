package worker

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	ok := Config{}.Defaulted()
	tests := []struct {
		name    string
		mod     func(*Config)
		wantVar string
	}{
		{"defaults", func(*Config) {}, ""},
		{"concurrency", func(c *Config) { c.Concurrency = -1 }, "TSFB_WORKER_CONCURRENCY"},
		{"chunk size", func(c *Config) { c.ChunkSize = MaxChunkSize + 1 }, "TSFB_CHUNK_SIZE"},
		{"max devices", func(c *Config) { c.MaxJobDevices = -5 }, "TSFB_MAX_JOB_DEVICES"},
		{"consumer", func(c *Config) { c.Consumer = "a.b" }, "TSFB_WORKER_CONSUMER"},
		{"max deliver", func(c *Config) { c.MaxDeliver = -1 }, "TSFB_WORKER_MAX_DELIVER"},
		{"ack wait", func(c *Config) { c.AckWait = time.Second }, "TSFB_WORKER_ACK_WAIT"},
		{"shutdown", func(c *Config) { c.ShutdownTimeout = -time.Second }, "TSFB_WORKER_SHUTDOWN_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mod(&c)
			err := c.Validate()
			if tt.wantVar == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantVar) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.wantVar)
			}
		})
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	vars := []string{"TSFB_WORKER_CONCURRENCY", "TSFB_CHUNK_SIZE", "TSFB_MAX_JOB_DEVICES",
		"TSFB_WORKER_CONSUMER", "TSFB_WORKER_MAX_DELIVER", "TSFB_WORKER_ACK_WAIT",
		"TSFB_WORKER_SHUTDOWN_TIMEOUT"}
	for _, v := range vars {
		t.Setenv(v, "") // restores the variable after the test
		os.Unsetenv(v)
	}
	c, err := LoadConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c != (Config{}).Defaulted() {
		t.Fatalf("defaults: %+v", c)
	}
	t.Setenv("TSFB_WORKER_ACK_WAIT", "30")
	if _, err := LoadConfig(context.Background()); err == nil {
		t.Fatal("a duration without a unit was accepted")
	}
}

func TestChunks(t *testing.T) {
	devs := devices(20, 7)
	got := chunks(devs, 3)
	if len(got) != 3 || len(got[0]) != 3 || len(got[2]) != 1 || got[2][0].Key() != devs[6].Key() {
		t.Fatalf("chunks of 7 by 3: %d", len(got))
	}
	if len(chunks(devs, 7)) != 1 || len(chunks(devs, 100)) != 1 {
		t.Fatal("one chunk expected")
	}
}

func TestBackoffIsCappedWithJitter(t *testing.T) {
	b := defaultBackoff
	for n := 1; n < 20; n++ {
		d := b.retry(n)
		if d < b.base/2 || d > b.cap {
			t.Fatalf("retry(%d) = %s, outside [%s, %s]", n, d, b.base/2, b.cap)
		}
		if r := b.redelivery(n); r > b.redeliverCap {
			t.Fatalf("redelivery(%d) = %s above the cap", n, r)
		}
	}
}
