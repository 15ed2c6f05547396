// Package simtest holds what tests of the ThingSpace client and of the
// simulator both need: a callback listener that records what it receives.
package simtest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/tsfallback/tsfallback/model"
)

// Listener is an HTTP server that records every callback body it
// receives; it is closed when the test ends.
type Listener struct {
	URL string

	mu     sync.Mutex
	bodies [][]byte
	status func(n int) int
}

// NewListener starts a Listener on loopback.
func NewListener(t testing.TB) *Listener {
	l := &Listener{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		l.mu.Lock()
		l.bodies = append(l.bodies, b)
		n := len(l.bodies)
		f := l.status
		l.mu.Unlock()
		code := http.StatusOK
		if f != nil {
			code = f(n)
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	l.URL = srv.URL
	return l
}

// SetStatus makes the listener answer its n-th callback (from 1) with
// f(n); nil answers 200.
func (l *Listener) SetStatus(f func(n int) int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status = f
}

// Raw returns the bodies received so far, in order.
func (l *Listener) Raw() [][]byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([][]byte(nil), l.bodies...)
}

// Callbacks decodes the bodies received so far; one that is not a
// callback fails the test.
func (l *Listener) Callbacks(t testing.TB) []model.CallbackBody {
	t.Helper()
	raw := l.Raw()
	out := make([]model.CallbackBody, len(raw))
	for i, b := range raw {
		if err := json.Unmarshal(b, &out[i]); err != nil {
			t.Fatalf("callback %d: %v: %s", i, err, b)
		}
	}
	return out
}
