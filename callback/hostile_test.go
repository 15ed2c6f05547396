package callback

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

// shortTimeouts makes the server's timeouts short enough for a test to
// watch them fire.
func shortTimeouts(cfg Config) Config {
	cfg.ReadHeaderTimeout = 300 * time.Millisecond
	cfg.ReadTimeout = 600 * time.Millisecond
	cfg.StoreTimeout = time.Second
	cfg.WriteTimeout = 2 * time.Second
	cfg.IdleTimeout = time.Second
	return cfg
}

// serveIngester runs Serve (which sets the timeouts and the connection
// limit, unlike Handler under httptest) on a loopback port.
func serveIngester(t *testing.T, cfg Config, bus *queue.Bus) (string, *Ingester) {
	t.Helper()
	in, err := NewIngester(cfg, bus, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String(), in
}

// closedWithin reads from c until the server ends the connection and
// returns how long that took, failing past limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s", limit)
	}
	return time.Since(start)
}

func dial(t *testing.T, base string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSlowClientsCutOff(t *testing.T) {
	bus := queuetest.Bus(t)
	cfg := shortTimeouts(testConfig())
	// Long enough that an honest client on a loaded machine is served
	// well inside them: the check below is about not waiting behind the
	// slow clients, not about speed.
	cfg.ReadHeaderTimeout, cfg.ReadTimeout, cfg.WriteTimeout = 2*time.Second, 3*time.Second, 4*time.Second
	base, _ := serveIngester(t, cfg, bus)
	good := callbackBody("req-slow", devices(30, 1)[0], model.StatusSuccess)

	// Headers byte by byte, never finished. The trickle stops when the
	// server hangs up, and after a bounded number of bytes in any case.
	trickle := dial(t, base)
	go func() {
		hdr := "POST " + CallbackPath + " HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 400)
		for i := range len(hdr) {
			if _, err := trickle.Write([]byte{hdr[i]}); err != nil {
				return
			}
			time.Sleep(20 * time.Millisecond) // the attack's pace, not a wait
		}
	}()

	// Complete headers, a body that never comes.
	stall := dial(t, base)
	fmt.Fprintf(stall, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\n\r\n%s", CallbackPath, len(good), good[:10])

	// Meanwhile an honest client is served at once, twice over.
	for range 2 {
		start := time.Now()
		if got := post(t, base, "application/json", good); got != 200 {
			t.Fatalf("honest client: %d", got)
		}
		if d := time.Since(start); d > cfg.ReadHeaderTimeout {
			t.Fatalf("honest client waited %s behind slow ones", d)
		}
	}

	if d := closedWithin(t, trickle, cfg.ReadHeaderTimeout+2*time.Second); d > cfg.ReadHeaderTimeout+time.Second {
		t.Fatalf("trickled headers cut after %s", d)
	}
	if d := closedWithin(t, stall, cfg.ReadTimeout+2*time.Second); d > cfg.ReadTimeout+time.Second {
		t.Fatalf("stalled body cut after %s", d)
	}
	if got := streamMsgs(t, bus, queue.StreamCallbacks); got != 1 {
		t.Fatalf("%d callbacks stored, want the honest one", got)
	}
}

func TestConnectionFloodBounded(t *testing.T) {
	bus := queuetest.Bus(t)
	cfg := shortTimeouts(testConfig())
	const connCap = 8
	cfg.MaxConns = connCap
	base, _ := serveIngester(t, cfg, bus)
	// One request first, so the client's own keep-alive goroutines exist
	// before the baseline is taken; then drop them.
	body := callbackBody("req-flood", devices(31, 1)[0], model.StatusSuccess)
	if got := post(t, base, "application/json", body); got != 200 {
		t.Fatalf("before the flood: %d", got)
	}
	http.DefaultClient.CloseIdleConnections()
	settle := func() int {
		// Closed connections' goroutines take a moment to return.
		var n int
		deadline := time.Now().Add(5 * time.Second)
		for n = runtime.NumGoroutine(); time.Now().Before(deadline); n = runtime.NumGoroutine() {
			time.Sleep(20 * time.Millisecond)
			if runtime.NumGoroutine() == n {
				break
			}
		}
		return n
	}
	base0 := settle()

	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	// Many idle connections, far past the cap; the test holds them open
	// and the server must drop each after its header timeout.
	const flood = 64
	conns := make([]net.Conn, flood)
	for i := range conns {
		conns[i] = dial(t, base)
	}
	limit := time.Duration(flood/connCap+2)*cfg.ReadHeaderTimeout + 5*time.Second
	for _, c := range conns {
		closedWithin(t, c, limit)
	}
	close(stop)
	<-sampled

	// Each open connection costs the server one goroutine (two while a
	// request is read); the sampler is one more.
	if grew := int(peak.Load()) - base0; grew > 2*connCap+4 {
		t.Fatalf("goroutines grew by %d for %d connections, cap %d", grew, flood, connCap)
	}
	t.Logf("goroutines grew by at most %d for %d connections", peak.Load()-int64(base0), flood)
	if got := post(t, base, "application/json", body); got != 200 {
		t.Fatalf("after the flood: %d", got)
	}
	http.DefaultClient.CloseIdleConnections()
	for _, c := range conns {
		c.Close()
	}
	queuetest.Eventually(t, 5*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= base0+2
	})
}

func TestHugeChunkedBody(t *testing.T) {
	bus := queuetest.Bus(t)
	cfg := shortTimeouts(testConfig())
	base, _ := serveIngester(t, cfg, bus)
	c := dial(t, base)
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"+
		"Transfer-Encoding: chunked\r\n\r\n", CallbackPath)

	// Up to 64 MB in 32 kB chunks, until the server stops reading.
	sent := make(chan int64, 1)
	go func() {
		chunk := append([]byte(fmt.Sprintf("%x\r\n", 32<<10)), bytes.Repeat([]byte(" "), 32<<10)...)
		chunk = append(chunk, "\r\n"...)
		var n int64
		for range 2048 {
			if _, err := c.Write(chunk); err != nil {
				break
			}
			n += int64(len(chunk))
		}
		sent <- n
	}()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("huge chunked body: %d", resp.StatusCode)
	}
	c.Close()
	if n := <-sent; n >= 2048*(32<<10) {
		t.Fatalf("the server read all %d bytes", n)
	}
	if got := streamMsgs(t, bus, queue.StreamCallbacks); got != 0 {
		t.Fatalf("%d callbacks stored", got)
	}
}
