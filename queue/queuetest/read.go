package queuetest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

// Eventually polls cond until it holds, failing the test after d.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Count returns how many messages the stream holds now.
func Count(t testing.TB, bus *queue.Bus, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, n := open(ctx, t, bus, stream)
	return n
}

// open returns the stream and how many messages it holds.
func open(ctx context.Context, t testing.TB, bus *queue.Bus, stream string) (jetstream.Stream, uint64) {
	t.Helper()
	st, err := bus.JS.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st, info.State.Msgs
}

// Msgs returns every message now stored in the stream, in order.
func Msgs(t testing.TB, bus *queue.Bus, stream string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, n := open(ctx, t, bus, stream)
	want := int(n)
	if want == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < want {
		batch, err := cons.Fetch(want-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			out = append(out, m)
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoHeartbeat) {
			t.Fatal(err)
		}
		if n == 0 {
			break // the stream lost messages to its limits meanwhile
		}
	}
	return out
}

// Events returns every result event now stored in FALLBACK_RESULTS.
func Events(t testing.TB, bus *queue.Bus) []model.Event {
	t.Helper()
	var out []model.Event
	for _, m := range Msgs(t, bus, queue.StreamResults) {
		var e model.Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatalf("decoding event: %v", err)
		}
		out = append(out, e)
	}
	return out
}

// OfType keeps the events of one type.
func OfType(es []model.Event, typ string) []model.Event {
	var out []model.Event
	for _, e := range es {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}
