package cli

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/sethvargo/go-envconfig"
)

// TestEveryVariableDocumented keeps the README's table of environment
// variables in step with the settings: every TSFB_ variable that a
// package reads has a row, and the row's default is the code's.
func TestEveryVariableDocumented(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // variable -> default cell
	for _, l := range strings.Split(string(readme), "\n") {
		cells := strings.Split(l, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`TSFB_") {
			continue
		}
		// A row may name several variables, with one default each or one
		// for all: "| `A`, `B` | 10, 20 |".
		names := strings.Split(cells[1], ",")
		def := strings.Trim(strings.TrimSpace(cells[2]), "`")
		defs := strings.Split(def, ", ")
		for i, name := range names {
			name = strings.Trim(strings.TrimSpace(name), "`")
			rows[name] = def
			if len(defs) == len(names) {
				rows[name] = defs[i]
			}
		}
	}
	var walk func(reflect.Type)
	n := 0
	walk = func(typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag, ok := f.Tag.Lookup("env")
			if !ok {
				if f.Type.Kind() == reflect.Struct {
					walk(f.Type)
				}
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			n++
			def, documented := rows[name]
			if !documented {
				t.Errorf("%s (%s.%s) has no row in the README's table", name, typ, f.Name)
				continue
			}
			// The default runs to the end of the tag (it may hold commas);
			// the README may explain it after a space.
			if _, v, ok := strings.Cut(opts, "default="); ok && def != v &&
				!strings.HasPrefix(def, v+" ") {
				t.Errorf("%s: README default %q, code %q", name, def, v)
			}
		}
	}
	walk(reflect.TypeOf(Settings{}))
	if n < 20 {
		t.Errorf("found only %d variables: the walk missed the settings", n)
	}
}

// TestZeroIsNotTheDefault: a variable set to 0 that would silently mean
// the default stops the command with the variable named.
func TestZeroIsNotTheDefault(t *testing.T) {
	for _, name := range []string{"TSFB_IMPORT_DEDUP_MEMORY_MB", "TSFB_THINGSPACE_LOGIN_BACKOFF",
		"TSFB_WORKER_CONCURRENCY"} {
		errOut := &syncBuffer{}
		env := Env{Lookup: envconfig.MapLookuper(map[string]string{name: "0"}),
			Stdin: strings.NewReader("iccid\n"), Stdout: &syncBuffer{}, Stderr: errOut}
		code := Main(context.Background(), []string{"import", "--account", testAccount, "--dry-run",
			"--quiet", "-"}, env)
		if code != ExitUsage || !strings.Contains(errOut.String(), name+": 0") {
			t.Errorf("%s=0: exit %d, want %d naming the variable:\n%s", name, code, ExitUsage, errOut)
		}
	}
}
