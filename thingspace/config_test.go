package thingspace

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := envconfig.MapLookuper(map[string]string{
		"TSFB_THINGSPACE_URL":                "http://127.0.0.1:1/api",
		"TSFB_THINGSPACE_CLIENT_ID":          "id",
		"TSFB_THINGSPACE_CLIENT_SECRET_FILE": secret,
		"TSFB_THINGSPACE_USERNAME":           "u",
		"TSFB_THINGSPACE_PASSWORD":           "p",
	})
	c, err := loadConfig(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientSecret.Reveal() != "from-file" || c.RequestTimeout != 30*time.Second || c.MaxDevices != 100 ||
		c.LoginAttempts != 3 {
		t.Fatalf("config = %+v", c)
	}
}

func TestValidateNamesVariables(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no url", map[string]string{}, "TSFB_THINGSPACE_URL"},
		{"no secret", map[string]string{"TSFB_THINGSPACE_URL": "http://127.0.0.1/api"},
			"TSFB_THINGSPACE_CLIENT_SECRET"},
		{"duration without unit", map[string]string{"TSFB_THINGSPACE_REQUEST_TIMEOUT": "30"},
			"TSFB_THINGSPACE_REQUEST_TIMEOUT"},
		{"too many login attempts", map[string]string{"TSFB_THINGSPACE_LOGIN_ATTEMPTS": "5"},
			"TSFB_THINGSPACE_LOGIN_ATTEMPTS"},
		{"bad url", map[string]string{"TSFB_THINGSPACE_URL": "ftp://x"}, "TSFB_THINGSPACE_URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig(context.Background(), envconfig.MapLookuper(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to name %s", err, tt.want)
			}
		})
	}
}
