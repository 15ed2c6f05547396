package config

import "encoding/json"

// Secret is a string that never prints. Passwords, client secrets and
// tokens have this type so that a log line, an error or a JSON dump of a
// configuration shows "[redacted]" however it is formatted.
type Secret string

const redacted = "[redacted]"

// Reveal returns the secret's value, for the one place that sends it.
func (s Secret) Reveal() string { return string(s) }

// String hides the value from fmt's %s and %v.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString hides the value from fmt's %#v.
func (s Secret) GoString() string { return s.String() }

// MarshalJSON hides the value from encoding/json.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }
