package callback

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

const (
	testUser    = "cb-user"
	testPass    = "cb-secret-pass"
	testAccount = "0000123456-00001"
)

func testConfig() Config {
	return Config{
		Username:      testUser,
		Password:      testPass,
		UnmatchedWait: 300 * time.Millisecond,
	}.Defaulted()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func streamMsgs(t testing.TB, bus *queue.Bus, name string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := bus.JS.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Msgs)
}

// readAll returns every message now in the stream.
func readAll(t *testing.T, bus *queue.Bus, name string) []jetstream.Msg {
	t.Helper()
	want := streamMsgs(t, bus, name)
	if want == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := bus.JS.OrderedConsumer(ctx, name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.Msg
	for len(out) < want {
		batch, err := cons.Fetch(want-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			out = append(out, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoHeartbeat) {
			t.Fatal(err)
		}
	}
	return out
}

func results(t *testing.T, bus *queue.Bus) []model.Event {
	t.Helper()
	var out []model.Event
	for _, m := range readAll(t, bus, queue.StreamResults) {
		var e model.Event
		if err := json.Unmarshal(m.Data(), &e); err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func ofType(es []model.Event, typ string) []model.Event {
	var out []model.Event
	for _, e := range es {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// callbackBody is the documented shape, with the test credentials.
func callbackBody(requestID string, d model.Device, status string) []byte {
	b := model.CallbackBody{
		RequestID:            requestID,
		DeviceIDs:            d.DeviceIDs,
		Status:               status,
		CallbackCount:        1,
		MaxCallbackThreshold: 4,
		Username:             testUser,
		Password:             testPass,
	}
	if status == model.StatusFailed {
		b.FaultResponse = &model.FaultResponse{FaultCode: "SVC0001", FaultString: "device not eligible"}
	}
	data, _ := json.Marshal(b)
	return data
}

func devices(seed uint64, n int) []model.Device {
	r := rand.New(rand.NewPCG(seed, 99))
	out := make([]model.Device, n)
	for i := range out {
		out[i] = model.RandomDevice(r)
	}
	return out
}
