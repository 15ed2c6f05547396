package queue

import "strings"

// ValidKey reports whether s can be used as (a part of) a KV key: the
// characters NATS allows in keys, no empty token (a leading, trailing or
// doubled dot). Every package that builds keys from outside input checks
// with it, so that they agree on what needs hashing first.
func ValidKey(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c == '-' || c == '/' || c == '_' || c == '=' || c == '.' ||
			(c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return false
		}
	}
	return true
}
