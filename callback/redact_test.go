package callback

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

// TestStoredCallbackHidesCredentials: the echoed username and password are
// the ingester's secret; whoever can read FALLBACK_CALLBACKS must not get
// them, and the rest of the body is kept for the correlator.
func TestStoredCallbackHidesCredentials(t *testing.T) {
	bus := queuetest.Bus(t)
	srv := newIngester(t, testConfig(), bus)
	body := callbackBody("req-redact", devices(40, 1)[0], model.StatusSuccess)
	if got := post(t, srv.URL, "application/json", body); got != http.StatusOK {
		t.Fatalf("answer %d", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := bus.JS.Stream(ctx, queue.StreamCallbacks)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	stored := string(m.Data)
	if strings.Contains(stored, testPass) || strings.Contains(stored, testUser) {
		t.Fatalf("stored callback keeps the credentials: %s", stored)
	}
	cb, err := Decode(m.Data)
	if err != nil || cb.RequestID != "req-redact" || len(cb.Device.DeviceIDs) == 0 {
		t.Fatalf("stored callback no longer decodes: %+v %v", cb, err)
	}

	// The same callback sent again is still stored once.
	if got := post(t, srv.URL, "application/json", body); got != http.StatusOK {
		t.Fatalf("resend answer %d", got)
	}
	if n := streamMsgs(t, bus, queue.StreamCallbacks); n != 1 {
		t.Fatalf("%d stored, want 1", n)
	}
}

// TestStalledBodyGets408 tells ThingSpace to send again, rather than a 400
// that reads as "your callback is wrong".
func TestStalledBodyGets408(t *testing.T) {
	bus := queuetest.Bus(t)
	base, _ := serveIngester(t, shortTimeouts(testConfig()), bus)
	good := callbackBody("req-stall", devices(41, 1)[0], model.StatusSuccess)
	c := dial(t, base)
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\n\r\n%s", CallbackPath, len(good), good[:10])
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if !strings.HasPrefix(line, "HTTP/1.1 408") {
		t.Fatalf("answer %q, want 408", line)
	}
}
