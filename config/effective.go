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
	eachVar(reflect.ValueOf(target), func(owner reflect.Value, i int, name string) {
		out[name] = RedactURLs(fmt.Sprint(owner.Field(i).Interface()))
	})
	return out
}

// eachVar calls fn for every field of v (a struct, or pointers to one)
// that names a variable, with the struct that holds the field, going into
// the fields that name none.
func eachVar(v reflect.Value, fn func(owner reflect.Value, field int, name string)) {
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
			eachVar(v.Field(i), fn)
			continue
		}
		fn(v, i, name)
	}
}
