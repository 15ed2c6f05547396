// Package queuetest starts real NATS servers for tests: an embedded
// JetStream server on a random loopback port with a temporary store.
package queuetest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/queue"
)

// Server starts an embedded JetStream server for the test and returns its
// URL. It is shut down by t.Cleanup.
func Server(t testing.TB) string {
	t.Helper()
	ns, url, err := queue.StartEmbedded("127.0.0.1:0", t.TempDir())
	if err != nil {
		t.Fatalf("starting embedded NATS: %v", err)
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return url
}

// Open opens a Bus on url, closed by t.Cleanup. Its logger is a no-op: the
// NATS handlers may log after the test has ended.
func Open(t testing.TB, url string) *queue.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := queue.Open(ctx, queue.Config{URL: url}, t.Name(), zap.NewNop())
	if err != nil {
		t.Fatalf("opening bus: %v", err)
	}
	t.Cleanup(b.Close)
	return b
}

// Bus starts a server and opens a Bus on it.
func Bus(t testing.TB) *queue.Bus {
	t.Helper()
	return Open(t, Server(t))
}
