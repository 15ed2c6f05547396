package model

import (
	"errors"
	"fmt"
)

// Errors of the account name and job id checks.
var (
	ErrAccountName = errors.New("model: invalid account name")
	ErrJobID       = errors.New("model: invalid job id")
)

// MaxJobIDLen is the longest job id accepted.
const MaxJobIDLen = 128

// ValidateAccountName checks the ThingSpace account name form: 10 digits, a
// hyphen and 5 digits, leading zeros kept ("0000123456-00001").
func ValidateAccountName(s string) error {
	if len(s) != 16 || s[10] != '-' || !digitsOnly(s[:10]) || !digitsOnly(s[11:]) {
		return fmt.Errorf("%w: %q, want 10 digits, a hyphen and 5 digits", ErrAccountName, s)
	}
	return nil
}

// ValidateJobID checks a job id: 1 to 128 of [A-Za-z0-9_-]. A job id is a
// subject token, so dots, spaces and wildcards are refused.
func ValidateJobID(s string) error {
	if s == "" || len(s) > MaxJobIDLen {
		return fmt.Errorf("%w: length %d, want 1 to %d", ErrJobID, len(s), MaxJobIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '_' || c == '-' || (c >= '0' && c <= '9') ||
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return fmt.Errorf("%w: character %q at %d, want [A-Za-z0-9_-]", ErrJobID, c, i)
		}
	}
	return nil
}
