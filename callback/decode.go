package callback

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tsfallback/tsfallback/model"
)

// Errors of Decode, wrapped with details.
var (
	ErrMalformed   = errors.New("callback: malformed callback")
	ErrNoRequestID = errors.New("callback: callback names no requestId")
	ErrNoDevice    = errors.New("callback: callback names no device")
	ErrNoStatus    = errors.New("callback: callback has no status")
)

// maxDecodedIDs bounds the identifiers taken from one callback, so a hostile
// body cannot make the correlator match against thousands of them.
const maxDecodedIDs = 16

// Decode reads a callback in any of the shapes ThingSpace's documentation
// shows: keys in any casing, the device's identifiers at the top level
// (deviceIds) or under deviceResponse.deviceProfileResponse
// .deviceIdentifierCollection, as an array or a single object, kind values in
// any casing (returned in lower case), counters as strings or numbers, and
// faultResponse's faultcode and faultstring as the Fault. Identifiers keep
// their exact text: numbers are never parsed.
//
// A callback that names no requestId or no device, or has no status (and no
// fault), is an error: it cannot be attributed, and a success that names no
// device must never be published.
func Decode(body []byte) (model.Callback, error) {
	var cb model.Callback
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var root any
	if err := dec.Decode(&root); err != nil {
		return cb, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return cb, fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	top, ok := root.(map[string]any)
	if !ok {
		return cb, fmt.Errorf("%w: body is not a JSON object", ErrMalformed)
	}

	cb.RequestID = strings.TrimSpace(text(field(top, "requestId")))
	if cb.RequestID == "" {
		return cb, ErrNoRequestID
	}
	cb.CallbackCount = number(field(top, "callbackCount"))
	cb.MaxCallbackThreshold = number(field(top, "maxCallbackThreshold"))
	cb.Fault = fault(top)

	ids := &idSet{}
	ids.add(field(top, "deviceIds"))
	ids.add(field(top, "deviceId"))
	if dr, ok := field(top, "deviceResponse").(map[string]any); ok {
		if dpr, ok := field(dr, "deviceProfileResponse").(map[string]any); ok {
			ids.add(field(dpr, "deviceIdentifierCollection"))
			ids.add(field(dpr, "deviceIds"))
		}
		ids.add(field(dr, "deviceIdentifierCollection"))
	}
	cb.Device = model.Device{DeviceIDs: ids.ids}
	if len(ids.ids) == 0 {
		return cb, fmt.Errorf("%w: request %s", ErrNoDevice, cb.RequestID)
	}

	cb.Status = normaliseStatus(text(field(top, "status")))
	if cb.Status == "" {
		if cb.Fault == nil {
			return cb, fmt.Errorf("%w: request %s", ErrNoStatus, cb.RequestID)
		}
		cb.Status = model.StatusFailed
	}
	if cb.Status == model.StatusFailed && cb.Fault == nil {
		cb.Fault = &model.Fault{Code: "FAILED", Message: "ThingSpace reported a failure without a fault"}
	}
	return cb, nil
}

// normaliseStatus upper-cases the status and maps the spellings of failure
// seen across the documentation's versions onto FAILED.
func normaliseStatus(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	switch s {
	case "FAILURE", "FAIL":
		return model.StatusFailed
	}
	return s
}

// fold reduces a key to compare it without case, "_" or "-".
func fold(k string) string {
	k = strings.ToLower(k)
	if strings.ContainsAny(k, "_-") {
		k = strings.NewReplacer("_", "", "-", "").Replace(k)
	}
	return k
}

// field returns the member of obj whose key folds to name's fold. An exact
// match wins over a folded one, so a body with both "requestId" and
// "RequestID" is read the same way every time.
func field(obj map[string]any, name string) any {
	if v, ok := obj[name]; ok {
		return v
	}
	want := fold(name)
	best := ""
	var found any
	for k, v := range obj {
		if fold(k) == want && (found == nil || k < best) {
			best, found = k, v
		}
	}
	return found
}

// text returns a string or the exact text of a number; "" otherwise.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	}
	return ""
}

// number reads a counter given as a number or a string; 0 when absent or
// unreadable, since the counters only inform.
func number(v any) int {
	n, err := strconv.Atoi(strings.TrimSpace(text(v)))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func fault(top map[string]any) *model.Fault {
	for _, name := range []string{"faultResponse", "fault"} {
		obj, ok := field(top, name).(map[string]any)
		if !ok {
			continue
		}
		f := model.Fault{
			Code:    firstText(obj, "faultcode", "code", "errorCode"),
			Message: firstText(obj, "faultstring", "message", "errorMessage", "description"),
		}
		if f.Code != "" || f.Message != "" {
			if f.Code == "" {
				f.Code = "UNKNOWN"
			}
			return &f
		}
	}
	return nil
}

func firstText(obj map[string]any, names ...string) string {
	for _, n := range names {
		if s := strings.TrimSpace(text(field(obj, n))); s != "" {
			return s
		}
	}
	return ""
}

// idSet collects identifiers without repeats.
type idSet struct{ ids []model.DeviceID }

// add takes an array of identifiers, one identifier object, or an object
// or array of objects that themselves hold a deviceIds member.
func (s *idSet) add(v any) {
	switch x := v.(type) {
	case []any:
		for _, m := range x {
			s.add(m)
		}
	case map[string]any:
		if inner := field(x, "deviceIds"); inner != nil {
			s.add(inner)
			return
		}
		kind := strings.ToLower(strings.TrimSpace(text(field(x, "kind"))))
		id := strings.TrimSpace(text(field(x, "id")))
		if kind == "" || id == "" || len(s.ids) >= maxDecodedIDs {
			return
		}
		for _, have := range s.ids {
			if have.Kind == kind && have.ID == id {
				return
			}
		}
		s.ids = append(s.ids, model.DeviceID{Kind: kind, ID: id})
	}
}
