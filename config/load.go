package config

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"

	"github.com/sethvargo/go-envconfig"
)

// FileSuffix marks the variable that names a file holding a secret.
const FileSuffix = "_FILE"

// Lookuper returns a lookuper over the process environment that also reads
// TSFB_X from the file named by TSFB_X_FILE when TSFB_X itself is unset.
func Lookuper() envconfig.Lookuper {
	return FileLookuper(envconfig.OsLookuper())
}

// FileLookuper adds the _FILE rule to another lookuper. A file that cannot
// be read is reported by Load with the variable's name.
func FileLookuper(l envconfig.Lookuper) envconfig.Lookuper {
	return &fileLookuper{base: l}
}

type fileLookuper struct {
	base envconfig.Lookuper
	err  error
}

func (f *fileLookuper) Lookup(key string) (string, bool) {
	path, ok := f.base.Lookup(key + FileSuffix)
	if v, set := f.base.Lookup(key); set && v != "" {
		if ok && path != "" {
			// Silently preferring one would hide a mistake in either.
			f.err = errors.Join(f.err, fmt.Errorf("%s and %s%s are both set: set one of them", key, key, FileSuffix))
		}
		return v, true
	}
	if !ok || path == "" {
		return f.base.Lookup(key)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		// The path is not secret; the content would be.
		f.err = errors.Join(f.err, fmt.Errorf("%s%s: reading %q: %w", key, FileSuffix, path, unwrapPathErr(err)))
		return "", false
	}
	return strings.TrimRight(string(data), "\r\n"), true
}

func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Load fills target (a pointer to a struct with env tags) from l. Errors
// name the environment variable, not the Go field.
func Load(ctx context.Context, l envconfig.Lookuper, target any) error {
	fl, ok := l.(*fileLookuper)
	if !ok {
		fl = &fileLookuper{base: l}
	}
	err := envconfig.ProcessWith(ctx, &envconfig.Config{Target: target, Lookuper: fl})
	if fl.err != nil {
		return fl.err
	}
	if err != nil {
		return renameField(target, err)
	}
	return nil
}

// Replaced returns, by variable name, the variables of a loaded target
// that were set but that the package's Defaulted method would replace, as
// it does with zero values: an operator who sets TSFB_X=0 must hear that
// it is not a setting, instead of getting the default silently. It checks
// every struct in target that has a Defaulted method returning its own
// type; l is the Lookuper target was loaded from.
func Replaced(target any, l envconfig.Lookuper) map[string]error {
	out := map[string]error{}
	eachVar(reflect.ValueOf(target), func(owner reflect.Value, i int, name string) {
		def, ok := defaulted(owner)
		if !ok || same(owner.Field(i), def.Field(i)) {
			return
		}
		raw, set := l.Lookup(name)
		if !set {
			return
		}
		given := fmt.Sprint(owner.Field(i).Interface())
		if strings.TrimSpace(raw) == "" {
			given = "an empty value"
		}
		out[name] = fmt.Errorf("%s: %s is not a setting of its own: it would be replaced by %v, "+
			"the default; leave the variable unset for the default, or give a value in range", name,
			given, def.Field(i).Interface())
	})
	return out
}

// same compares a field before and after Defaulted; NaN is the same as NaN
// here (Validate refuses it, Defaulted does not replace it).
func same(a, b reflect.Value) bool {
	if a.CanFloat() && b.CanFloat() && math.IsNaN(a.Float()) && math.IsNaN(b.Float()) {
		return true
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// defaulted returns v.Defaulted() when v has that method returning its
// own type.
func defaulted(v reflect.Value) (reflect.Value, bool) {
	m := v.MethodByName("Defaulted")
	if !m.IsValid() || m.Type().NumIn() != 0 || m.Type().NumOut() != 1 || m.Type().Out(0) != v.Type() {
		return reflect.Value{}, false
	}
	return m.Call(nil)[0], true
}

// renameField turns go-envconfig's "Field: reason" (or, for nested
// structs, "Outer: Field: reason") into "TSFB_VAR: reason".
func renameField(target any, err error) error {
	t := reflect.TypeOf(target)
	rest := err.Error()
	for {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct {
			return err
		}
		field, tail, ok := strings.Cut(rest, ": ")
		if !ok {
			return err
		}
		f, found := t.FieldByName(field)
		if !found {
			return err
		}
		if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); strings.TrimSpace(name) != "" {
			return fmt.Errorf("%s: %s", strings.TrimSpace(name), tail)
		}
		t, rest = f.Type, tail
	}
}
