package config

import (
	"fmt"
	"reflect"
	"strings"
)

// Effective renders a loaded configuration as "TSFB_VAR" -> value, for the
// start-up log: durations in their usual form, every Secret redacted
// (values are printed with fmt, and Secret hides itself there) and the
// password of any URL with credentials hidden.
func Effective(target any) map[string]string {
	out := map[string]string{}
	walk(reflect.ValueOf(target), out)
	return out
}

func walk(v reflect.Value, out map[string]string) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		name = strings.TrimSpace(name)
		if name == "" {
			walk(v.Field(i), out)
			continue
		}
		out[name] = RedactURLs(fmt.Sprint(v.Field(i).Interface()))
	}
}
