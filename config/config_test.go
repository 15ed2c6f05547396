package config

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sethvargo/go-envconfig"
)

type sample struct {
	Rate     float64       `env:"TSFB_T_RATE, default=1"`
	Wait     time.Duration `env:"TSFB_T_WAIT, default=5s"`
	Password Secret        `env:"TSFB_T_PASSWORD"`
}

type nested struct {
	Inner sample
}

func TestLoadNamesNestedVariable(t *testing.T) {
	var n nested
	err := Load(context.Background(), envconfig.MapLookuper(map[string]string{"TSFB_T_WAIT": "7"}), &n)
	if err == nil || !strings.HasPrefix(err.Error(), "TSFB_T_WAIT: ") {
		t.Fatalf("got %v", err)
	}
}

func TestLoadReadsSecretFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var s sample
	l := envconfig.MapLookuper(map[string]string{"TSFB_T_PASSWORD_FILE": path})
	if err := Load(context.Background(), l, &s); err != nil {
		t.Fatal(err)
	}
	if s.Password.Reveal() != "hunter2" || s.Rate != 1 || s.Wait != 5*time.Second {
		t.Fatalf("loaded %#v", s)
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"TSFB_T_WAIT": "30"}, "TSFB_T_WAIT: "},
		{map[string]string{"TSFB_T_RATE": "fast"}, "TSFB_T_RATE: "},
		{map[string]string{"TSFB_T_PASSWORD_FILE": "/nonexistent/pw"}, "TSFB_T_PASSWORD_FILE: "},
		{map[string]string{"TSFB_T_PASSWORD": "a", "TSFB_T_PASSWORD_FILE": "/nonexistent/pw"}, "TSFB_T_PASSWORD and TSFB_T_PASSWORD_FILE are both set"},
	}
	for _, tt := range tests {
		var s sample
		err := Load(context.Background(), envconfig.MapLookuper(tt.env), &s)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%v: got %v, want prefix %q", tt.env, err, tt.want)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := sample{Password: "hunter2"}
	data, _ := json.Marshal(s)
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%+v %#v %s", s, s, s.Password), string(data)} {
		if strings.Contains(out, "hunter2") {
			t.Fatalf("secret leaked: %s", out)
		}
	}
	if s.Password.Reveal() != "hunter2" {
		t.Fatal("Reveal lost the value")
	}
}

func TestEffective(t *testing.T) {
	got := Effective(nested{Inner: sample{Rate: 2, Wait: 3 * time.Second, Password: "hunter2"}})
	want := map[string]string{"TSFB_T_RATE": "2", "TSFB_T_WAIT": "3s", "TSFB_T_PASSWORD": "[redacted]"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Effective = %v, want %v", got, want)
	}
}

func TestEffectiveHidesURLPasswords(t *testing.T) {
	type urls struct {
		URL string `env:"TSFB_T_URL"`
	}
	got := Effective(urls{URL: "nats://u:hunter2@n1:4222,nats://n2:4222"})["TSFB_T_URL"]
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "n1:4222") || !strings.Contains(got, "n2:4222") {
		t.Fatalf("Effective shows %q", got)
	}
}

// defaulting replaces zero values, as the packages' configs do.
type defaulting struct {
	Size  int           `env:"TSFB_T_SIZE, default=32"`
	Wait  time.Duration `env:"TSFB_T_WAIT2, default=5s"`
	Ratio float64       `env:"TSFB_T_RATIO, default=0"`
}

func (d defaulting) Defaulted() defaulting {
	if d.Size == 0 {
		d.Size = 32
	}
	if d.Wait == 0 {
		d.Wait = 5 * time.Second
	}
	return d
}

// TestReplaced: a variable set to a value that Defaulted replaces is
// named; unset ones, kept ones and structs without Defaulted are not.
func TestReplaced(t *testing.T) {
	var got struct {
		D     defaulting
		Plain sample
	}
	l := envconfig.MapLookuper(map[string]string{"TSFB_T_SIZE": "0", "TSFB_T_RATIO": "NaN",
		"TSFB_T_RATE": "0", "TSFB_T_WAIT2": ""})
	if err := Load(context.Background(), l, &got); err != nil {
		t.Fatal(err)
	}
	r := Replaced(&got, l)
	if len(r) != 2 || r["TSFB_T_SIZE"] == nil ||
		!strings.Contains(r["TSFB_T_SIZE"].Error(), "0 is not a setting of its own: it would be replaced by 32") ||
		r["TSFB_T_WAIT2"] == nil || !strings.Contains(r["TSFB_T_WAIT2"].Error(), "an empty value") {
		t.Fatalf("Replaced = %v, want TSFB_T_SIZE and TSFB_T_WAIT2", r)
	}
}
