package ratelimit

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantVar string
	}{
		{"defaults", Config{}.Defaulted(), ""},
		{"zero rps", Config{RPS: 0, Burst: 1}, "TSFB_RATE_RPS"},
		{"negative rps", Config{RPS: -1, Burst: 1}, "TSFB_RATE_RPS"},
		{"nan rps", Config{RPS: math.NaN(), Burst: 1}, "TSFB_RATE_RPS"},
		{"infinite rps", Config{RPS: math.Inf(1), Burst: 1}, "TSFB_RATE_RPS"},
		{"zero burst", Config{RPS: 1, Burst: 0}, "TSFB_RATE_BURST"},
		{"fractional rps", Config{RPS: 0.5, Burst: 1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.wantVar == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantVar) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.wantVar)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	for _, v := range []string{"TSFB_RATE_RPS", "TSFB_RATE_BURST"} {
		t.Setenv(v, "") // restores the variable after the test
		os.Unsetenv(v)
	}
	c, err := LoadConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.RPS != DefaultRPS || c.Burst != DefaultBurst {
		t.Fatalf("defaults = %+v", c)
	}
	t.Setenv("TSFB_RATE_RPS", "2.5")
	t.Setenv("TSFB_RATE_BURST", "0")
	if _, err := LoadConfig(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "TSFB_RATE_BURST") {
		t.Fatalf("LoadConfig with burst 0 = %v", err)
	}
}
