package queue

import "testing"

func TestValidKey(t *testing.T) {
	for s, want := range map[string]bool{
		"req-1": true, "a.b": true, "A_b=c/d": true, "h-0f": true,
		"": false, ".a": false, "a.": false, "a..b": false, "a b": false, "a*": false,
		"a>": false, "eid:1": false, "é": false,
	} {
		if got := ValidKey(s); got != want {
			t.Errorf("ValidKey(%q) = %v, want %v", s, got, want)
		}
	}
}
