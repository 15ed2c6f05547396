package ratelimit

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// entry is a bucket entry as the watcher delivers it.
type entry struct {
	key, val string
}

func (e entry) Bucket() string                  { return "fallback_workers" }
func (e entry) Key() string                     { return e.key }
func (e entry) Value() []byte                   { return []byte(e.val) }
func (e entry) Revision() uint64                { return 1 }
func (e entry) Created() time.Time              { return time.Time{} }
func (e entry) Delta() uint64                   { return 0 }
func (e entry) Operation() jetstream.KeyValueOp { return jetstream.KeyValuePut }
func (e entry) String() string                  { return e.key }

var _ jetstream.KeyValueEntry = entry{}

// TestOutageDropsNobody: after NATS was away for longer than the TTL,
// every member's heartbeats are old, ours included; the others must not be
// dropped the moment ours come back, or this process takes their share
// while they still send at theirs.
func TestOutageDropsNobody(t *testing.T) {
	lim, err := New(context.Background(), Config{RPS: 20, Burst: 2}, nil, "a", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer lim.Close()
	tm := timing{heartbeat: 2 * time.Second, ttl: 6 * time.Second}
	m := &membership{l: lim, id: "a", tm: tm, seen: map[string]member{}, log: zap.NewNop()}
	t0 := time.Now()
	self, other := entry{memberPrefix + "a", "1"}, entry{memberPrefix + "b", "1"}
	m.handle(self, t0)
	m.handle(other, t0)
	m.recount(t0)
	if m.l.Members() != 2 {
		t.Fatalf("members %d, want 2", m.l.Members())
	}

	// Ten seconds without any heartbeat, then ours arrives first.
	back := t0.Add(10 * time.Second)
	m.handle(self, back)
	m.recount(back)
	if m.l.Members() != 2 {
		t.Fatalf("after the outage: members %d, want 2 (b not heard yet, but neither could it be)", m.l.Members())
	}

	// b is really gone: a TTL of working view later, it is dropped.
	for ts := back; !ts.After(back.Add(tm.ttl + tm.heartbeat)); ts = ts.Add(tm.heartbeat) {
		m.handle(self, ts)
		m.recount(ts)
	}
	if m.l.Members() != 1 {
		t.Fatalf("b silent for a TTL of working view: members %d, want 1", m.l.Members())
	}
}
