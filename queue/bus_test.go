package queue_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

func TestOpenIsIdempotent(t *testing.T) {
	url := queuetest.Server(t)
	a := queuetest.Open(t, url)
	b := queuetest.Open(t, url)
	ctx := context.Background()
	if err := b.Ensure(ctx); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	for _, name := range []string{queue.StreamJobs, queue.StreamCallbacks, queue.StreamResults, queue.StreamDead} {
		s, err := a.JS.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		if name == queue.StreamJobs && s.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy {
			t.Fatalf("%s is not a work queue", name)
		}
	}
}

func TestEnsureRecreatesLostStreams(t *testing.T) {
	b := queuetest.Bus(t)
	ctx := context.Background()
	if err := b.JS.DeleteStream(ctx, queue.StreamJobs); err != nil {
		t.Fatal(err)
	}
	if err := b.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.JS.Stream(ctx, queue.StreamJobs); err != nil {
		t.Fatalf("stream not re-created: %v", err)
	}
}

func TestPublishEventDeduplicatesAndReplies(t *testing.T) {
	b := queuetest.Bus(t)
	ctx := context.Background()
	sub, err := b.NC.SubscribeSync("reply.here")
	if err != nil {
		t.Fatal(err)
	}
	e := model.Event{Type: model.EventJobAccepted, JobID: "j1", AccountName: "0000123456-00001"}
	for range 2 {
		if err := b.PublishEvent(ctx, e, "reply.here"); err != nil {
			t.Fatal(err)
		}
	}
	s, err := b.JS.Stream(ctx, queue.StreamResults)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d events, want 1", info.State.Msgs)
	}
	msg, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no event on replyTo: %v", err)
	}
	var got model.Event
	if err := json.Unmarshal(msg.Data, &got); err != nil || got.JobID != "j1" {
		t.Fatalf("reply %s: %v", msg.Data, err)
	}
	if msg.Subject != "reply.here" {
		t.Fatalf("subject %s", msg.Subject)
	}
}

func TestOpenFailsClearlyWithoutServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := queue.Open(ctx, queue.Config{URL: "nats://u:secretpw@127.0.0.1:1"}, "t", zap.NewNop())
	if err == nil {
		t.Fatal("want an error")
	}
	if got := err.Error(); !strings.Contains(got, "127.0.0.1:1") || strings.Contains(got, "secretpw") {
		t.Fatalf("error %q must name the server and hide the password", got)
	}
}

func TestConfigValidate(t *testing.T) {
	c := queue.Config{}.Defaulted()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Replicas = 7
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "TSFB_NATS_REPLICAS") {
		t.Fatalf("got %v", err)
	}
}

// TestLostAckEnds: an asynchronous publish whose ack never comes (a
// responder that stays silent, as a stream leader lost in a failover)
// ends with an error after the ack timeout, even under a context without
// a deadline, instead of holding its caller for ever.
func TestLostAckEnds(t *testing.T) {
	defer queue.SetPublishAckTimeout(200 * time.Millisecond)()
	bus := queuetest.Bus(t)
	sub, err := bus.NC.SubscribeSync("silent.subject")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	f, err := bus.JS.PublishAsync("silent.subject", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- queue.AwaitAck(context.Background(), f) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("AwaitAck: nil error for an ack that never came")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("AwaitAck still waiting 10s after a 200ms ack timeout")
	}
}
