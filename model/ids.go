package model

import (
	"errors"
	"fmt"
	"strings"
)

// Identifier kinds accepted in a job and sent to ThingSpace.
const (
	KindEID   = "eid"
	KindICCID = "iccid"
	KindIMEI  = "imei"
	// KindMDN appears in callbacks only; jobs may not use it.
	KindMDN = "mdn"
)

// JobKinds lists the kinds a job may carry, in the order they are reported.
var JobKinds = []string{KindEID, KindICCID, KindIMEI}

// DeviceID is one identifier of a device, as ThingSpace spells it.
type DeviceID struct {
	Kind string `json:"kind"`
	ID   string `json:"id"`
}

// Device is one device of a job or request: one or more identifiers.
type Device struct {
	DeviceIDs []DeviceID `json:"deviceIds"`
}

// Key returns a stable text form of the device, used in message ids and KV
// keys: the identifiers sorted by kind, "kind-id" joined by "_", which is
// also a valid KV key and subject token.
func (d Device) Key() string {
	parts := make([]string, 0, len(d.DeviceIDs))
	for _, k := range append(JobKinds, KindMDN) {
		for _, id := range d.DeviceIDs {
			if strings.EqualFold(id.Kind, k) {
				parts = append(parts, k+"-"+id.ID)
			}
		}
	}
	return strings.Join(parts, "_")
}

// ID returns the identifier of the given kind, or "".
func (d Device) ID(kind string) string {
	for _, id := range d.DeviceIDs {
		if strings.EqualFold(id.Kind, kind) {
			return id.ID
		}
	}
	return ""
}

// Errors returned by the identifier checks. They are wrapped with details,
// so callers match them with errors.Is.
var (
	ErrEmpty       = errors.New("model: empty")
	ErrNotDigits   = errors.New("model: not all digits")
	ErrLength      = errors.New("model: wrong length")
	ErrCheckDigit  = errors.New("model: check digit does not match")
	ErrPrefix      = errors.New("model: wrong prefix")
	ErrUnknownKind = errors.New("model: unknown identifier kind")
)

func digitsOnly(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func checkDigits(s string, lengths ...int) error {
	if s == "" {
		return ErrEmpty
	}
	if !digitsOnly(s) {
		return fmt.Errorf("%w: %q", ErrNotDigits, s)
	}
	for _, n := range lengths {
		if len(s) == n {
			return nil
		}
	}
	if len(lengths) == 1 {
		return fmt.Errorf("%w: %d digits, want %d", ErrLength, len(s), lengths[0])
	}
	return fmt.Errorf("%w: %d digits, want %d to %d", ErrLength, len(s),
		lengths[0], lengths[len(lengths)-1])
}

// LuhnValid reports whether the digit string passes the Luhn check, its
// last digit being the check digit.
func LuhnValid(s string) bool {
	return s != "" && LuhnDigit(s[:len(s)-1]) == s[len(s)-1]
}

// LuhnDigit returns the Luhn check digit for the digit string body.
func LuhnDigit(body string) byte {
	sum := 0
	double := true
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return byte('0' + (10-sum%10)%10)
}

// mod97 returns the digit string taken as a number, mod 97.
func mod97(s string) int {
	r := 0
	for i := 0; i < len(s); i++ {
		r = (r*10 + int(s[i]-'0')) % 97
	}
	return r
}

// ValidateEID checks a 32-digit EID with its ISO/IEC 7064 MOD 97-10 check.
func ValidateEID(s string) error {
	if err := checkDigits(s, 32); err != nil {
		return err
	}
	if mod97(s) != 1 {
		return fmt.Errorf("%w: mod 97 is %d, want 1", ErrCheckDigit, mod97(s))
	}
	return nil
}

// ValidateICCID checks a 19- or 20-digit ICCID that starts with 89 and ends
// with a Luhn check digit.
func ValidateICCID(s string) error {
	if err := checkDigits(s, 19, 20); err != nil {
		return err
	}
	if !strings.HasPrefix(s, "89") {
		return fmt.Errorf("%w: starts with %q, want \"89\"", ErrPrefix, s[:2])
	}
	if !LuhnValid(s) {
		return fmt.Errorf("%w: Luhn check failed", ErrCheckDigit)
	}
	return nil
}

// ValidateIMEI checks a 15-digit IMEI whose last digit is the Luhn check
// digit over the first 14.
func ValidateIMEI(s string) error {
	if err := checkDigits(s, 15); err != nil {
		return err
	}
	if !LuhnValid(s) {
		return fmt.Errorf("%w: Luhn check failed", ErrCheckDigit)
	}
	return nil
}

// ValidateMDN checks a 10-digit MDN.
func ValidateMDN(s string) error {
	return checkDigits(s, 10)
}

// ValidateDeviceID checks one identifier of a job. Kinds are matched in
// lower case, as ThingSpace documents them.
func ValidateDeviceID(id DeviceID) error {
	switch id.Kind {
	case KindEID:
		return ValidateEID(id.ID)
	case KindICCID:
		return ValidateICCID(id.ID)
	case KindIMEI:
		return ValidateIMEI(id.ID)
	case "":
		return fmt.Errorf("%w: kind is missing", ErrUnknownKind)
	default:
		return fmt.Errorf("%w: %q (want eid, iccid or imei)", ErrUnknownKind, id.Kind)
	}
}
