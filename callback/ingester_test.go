package callback

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

func newIngester(t *testing.T, cfg Config, bus *queue.Bus) *httptest.Server {
	t.Helper()
	in, err := NewIngester(cfg, bus, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(in.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, ctype string, body []byte) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+CallbackPath, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestIngesterAnswers(t *testing.T) {
	bus := queuetest.Bus(t)
	cfg := testConfig()
	cfg.MaxBody = 1024
	srv := newIngester(t, cfg, bus)
	d := devices(1, 1)[0]
	good := callbackBody("req-1", d, model.StatusSuccess)

	wrong := bytes.Replace(good, []byte(testPass), []byte("guess"), 1)
	var noPass map[string]any
	_ = json.Unmarshal(good, &noPass)
	delete(noPass, "password")
	missing, _ := json.Marshal(noPass)
	upper := bytes.Replace(good, []byte(`"username"`), []byte(`"UserName"`), 1)
	big := append(bytes.Repeat([]byte(" "), 2000), good...)

	tests := []struct {
		name   string
		ctype  string
		body   []byte
		want   int
		stored int
	}{
		{"wrong password", "application/json", wrong, 401, 0},
		{"missing password", "application/json", missing, 401, 0},
		{"not json", "application/json", []byte("{oops"), 400, 0},
		{"too big", "application/json", big, 413, 0},
		{"form", "application/x-www-form-urlencoded", good, 415, 0},
		{"good", "application/json; charset=utf-8", good, 200, 1},
		{"key casing, no content type", "", upper, 200, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := post(t, srv.URL, tt.ctype, tt.body); got != tt.want {
				t.Fatalf("status %d, want %d", got, tt.want)
			}
			// Stored before the 200: no waiting.
			if got := streamMsgs(t, bus, queue.StreamCallbacks); got != tt.stored {
				t.Fatalf("%d callbacks stored, want %d", got, tt.stored)
			}
		})
	}

	t.Run("method", func(t *testing.T) {
		resp, err := http.Get(srv.URL + CallbackPath)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
			t.Fatalf("GET: %d %q", resp.StatusCode, resp.Header.Get("Allow"))
		}
	})
	t.Run("too big without length", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() { _, _ = pw.Write(big); pw.Close() }()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+CallbackPath, pr)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Fatalf("chunked too big: %d", resp.StatusCode)
		}
	})
	t.Run("probes and metrics", func(t *testing.T) {
		for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready",
			"/metrics": `tsfb_callback_http_responses_total{code="401"}`} {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
				t.Fatalf("%s: %d %q", path, resp.StatusCode, b)
			}
			if strings.Contains(string(b), testPass) {
				t.Fatalf("%s shows the password", path)
			}
		}
	})
}

// TestIngesterNATSDown stops the NATS server under a running ingester:
// callbacks get 503 within a few seconds while it is away, and 200 again
// once it is back on the same port with the same store.
func TestIngesterNATSDown(t *testing.T) {
	dir := t.TempDir()
	ns, url, err := queue.StartEmbedded("127.0.0.1:0", dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	listen := strings.TrimPrefix(url, "nats://")
	bus := queuetest.Open(t, url)
	cfg := testConfig()
	srv := newIngester(t, cfg, bus)
	body := func(seed uint64) []byte { return callbackBody("req-1", devices(seed, 1)[0], "SUCCESS") }
	if got := post(t, srv.URL, "application/json", body(2)); got != 200 {
		t.Fatalf("with NATS: %d", got)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	start := time.Now()
	if got := post(t, srv.URL, "application/json", body(3)); got != 503 {
		t.Fatalf("without NATS: %d, want 503", got)
	}
	if d := time.Since(start); d > cfg.StoreTimeout+time.Second {
		t.Fatalf("503 took %s", d)
	}
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("readyz without NATS: %d", resp.StatusCode)
	}

	ns, _, err = queue.StartEmbedded(listen, dir)
	if err != nil {
		t.Fatal(err)
	}
	// ThingSpace sends the refused callback again; it is stored this time.
	queuetest.Eventually(t, 15*time.Second, "a 200 after NATS came back", func() bool {
		return post(t, srv.URL, "application/json", body(3)) == 200
	})
	resp, err = http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz after NATS came back: %d", resp.StatusCode)
	}
	if got := streamMsgs(t, bus, queue.StreamCallbacks); got != 2 {
		t.Fatalf("%d callbacks stored across the restart, want 2", got)
	}
}

func TestIngesterAllowList(t *testing.T) {
	bus := queuetest.Bus(t)
	cfg := testConfig()
	cfg.Allow = "10.0.0.0/8"
	srv := newIngester(t, cfg, bus)
	body := callbackBody("req-1", devices(4, 1)[0], model.StatusSuccess)
	if got := post(t, srv.URL, "application/json", body); got != 403 {
		t.Fatalf("from loopback, not allowed: %d", got)
	}

	// A forwarded address counts only from a trusted proxy.
	cfg.TrustedProxies = "127.0.0.1"
	srv2 := newIngester(t, cfg, bus)
	req, _ := http.NewRequest(http.MethodPost, srv2.URL+CallbackPath, bytes.NewReader(body))
	req.Header.Set("X-Forwarded-For", "192.0.2.1, 10.1.2.3")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("via trusted proxy: %d", resp.StatusCode)
	}
}

func TestClientAddr(t *testing.T) {
	proxies, _ := parsePrefixes("127.0.0.1, 10.9.0.0/16")
	f := sourceFilter{proxies: proxies}
	tests := []struct{ remote, xff, want string }{
		{"192.0.2.7:1234", "10.1.1.1", "192.0.2.7"},             // untrusted peer: header ignored
		{"127.0.0.1:1", "203.0.113.5, 10.9.1.1", "203.0.113.5"}, // skip trusted hops
		{"127.0.0.1:1", "1.1.1.1, 203.0.113.5", "203.0.113.5"},  // the client wrote 1.1.1.1
		{"127.0.0.1:1", "", "127.0.0.1"},
		{"[::ffff:127.0.0.1]:1", "198.51.100.1", "198.51.100.1"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "/", nil)
		r.RemoteAddr = tt.remote
		if tt.xff != "" {
			r.Header.Set("X-Forwarded-For", tt.xff)
		}
		got, ok := f.clientAddr(r)
		if !ok || got.String() != tt.want {
			t.Errorf("%s %q: %v %v, want %s", tt.remote, tt.xff, got, ok, tt.want)
		}
	}
}

func TestJobStatusAndServe(t *testing.T) {
	bus := queuetest.Bus(t)
	in, err := NewIngester(testConfig(), bus, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	tr, _ := progress.New(bus, zaptest.NewLogger(t))
	job := model.Job{JobID: "status-job", AccountName: testAccount, Devices: devices(5, 3)}
	if err := tr.StartJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- in.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()

	resp, err := http.Get(base + "/v1/jobs/status-job")
	if err != nil {
		t.Fatal(err)
	}
	var st progress.JobState
	_ = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if resp.StatusCode != 200 || st.Counts.Devices != 3 || st.JobID != "status-job" {
		t.Fatalf("status: %d %+v", resp.StatusCode, st)
	}
	resp, err = http.Get(base + "/v1/jobs/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("unknown job: %d", resp.StatusCode)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(ShutdownTimeout + time.Second):
		t.Fatal("Serve did not return")
	}
}

func TestConfigValidateAndRedact(t *testing.T) {
	c := testConfig()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	eff := config.Effective(c)
	if s := fmt.Sprint(eff); strings.Contains(s, testPass) || strings.Contains(s, testUser) ||
		eff["TSFB_CALLBACK_ADDR"] != c.Addr {
		t.Fatalf("the start-up log would show a credential or miss the address: %s", s)
	}
	for _, tt := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Password = "" }, "TSFB_CALLBACK_PASSWORD"},
		{func(c *Config) { c.Username = "" }, "TSFB_CALLBACK_USERNAME"},
		{func(c *Config) { c.MaxBody = -1 }, "TSFB_CALLBACK_MAX_BODY"},
		{func(c *Config) { c.UnmatchedWait = -1 }, "TSFB_CALLBACK_UNMATCHED_WAIT"},
		{func(c *Config) { c.Timeout = -1 }, "TSFB_CALLBACK_TIMEOUT"},
		{func(c *Config) { c.Allow = "10.0.0.0/99" }, "TSFB_CALLBACK_ALLOW"},
		{func(c *Config) { c.TrustedProxies = "proxy" }, "TSFB_CALLBACK_TRUSTED_PROXIES"},
		{func(c *Config) { c.AdminAllow = "everyone" }, "TSFB_CALLBACK_ADMIN_ALLOW"},
		{func(c *Config) { c.AdminAddr = c.Addr }, "TSFB_CALLBACK_ADMIN_ADDR"},
		{func(c *Config) { c.MaxConns = -1 }, "TSFB_CALLBACK_MAX_CONNS"},
		{func(c *Config) { c.ReadHeaderTimeout = -1 }, "TSFB_CALLBACK_READ_HEADER_TIMEOUT"},
		{func(c *Config) { c.ReadTimeout = -1 }, "TSFB_CALLBACK_READ_TIMEOUT"},
		{func(c *Config) { c.IdleTimeout = -1 }, "TSFB_CALLBACK_IDLE_TIMEOUT"},
		{func(c *Config) { c.StoreTimeout = -1 }, "TSFB_CALLBACK_STORE_TIMEOUT"},
		{func(c *Config) { c.WriteTimeout = c.StoreTimeout }, "TSFB_CALLBACK_WRITE_TIMEOUT"},
	} {
		c := testConfig()
		tt.mut(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), tt.want+":") {
			t.Errorf("got %v, want an error naming %s", err, tt.want)
		}
	}
}

func TestLoadConfigFromEnv(t *testing.T) {
	t.Setenv("TSFB_CALLBACK_USERNAME", "u")
	t.Setenv("TSFB_CALLBACK_PASSWORD", "p")
	t.Setenv("TSFB_CALLBACK_TIMEOUT", "5")
	if _, err := LoadConfig(context.Background()); err == nil ||
		!strings.HasPrefix(err.Error(), "reading callback configuration: TSFB_CALLBACK_TIMEOUT") {
		t.Fatalf("duration without unit: %v", err)
	}
	t.Setenv("TSFB_CALLBACK_TIMEOUT", "5m")
	c, err := LoadConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != DefaultAddr || c.MaxBody != DefaultMaxBody || c.UnmatchedWait != DefaultUnmatchedWait ||
		c.Timeout != 5*time.Minute || c.Password.Reveal() != "p" || c.AdminAllow != DefaultAdminAllow ||
		c.AdminAddr != "" || c.ReadHeaderTimeout != DefaultReadHeaderTimeout ||
		c.StoreTimeout != DefaultStoreTimeout || c.MaxConns != DefaultMaxConns {
		t.Fatalf("loaded %+v", c)
	}
}

func get(t *testing.T, url string, hdr map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestAdminRoutes(t *testing.T) {
	bus := queuetest.Bus(t)
	tr, _ := progress.New(bus, zaptest.NewLogger(t))
	job := model.Job{JobID: "admin-job", AccountName: testAccount, Devices: devices(6, 1)}
	if err := tr.StartJob(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	xff := map[string]string{"X-Forwarded-For": "203.0.113.9"}

	t.Run("callback port, loopback only", func(t *testing.T) {
		srv := newIngester(t, testConfig(), bus)
		for path, want := range map[string]int{"/metrics": 200, "/v1/jobs/admin-job": 200,
			"/healthz": 200, "/readyz": 200} {
			if got := get(t, srv.URL+path, nil); got != want {
				t.Errorf("%s from loopback: %d, want %d", path, got, want)
			}
		}
		// Relayed by a proxy nobody configured: not local, whatever the peer.
		for _, path := range []string{"/metrics", "/v1/jobs/admin-job"} {
			if got := get(t, srv.URL+path, xff); got != 403 {
				t.Errorf("%s forwarded: %d, want 403", path, got)
			}
		}
	})
	t.Run("callback port, other sources", func(t *testing.T) {
		for _, allow := range []string{"10.0.0.0/8", "none"} {
			cfg := testConfig()
			cfg.AdminAllow = allow
			srv := newIngester(t, cfg, bus)
			for path, want := range map[string]int{"/metrics": 403, "/v1/jobs/admin-job": 403, "/healthz": 200} {
				if got := get(t, srv.URL+path, nil); got != want {
					t.Errorf("allow %q: %s: %d, want %d", allow, path, got, want)
				}
			}
		}
	})
	t.Run("admin listener", func(t *testing.T) {
		cfg := testConfig()
		cfg.AdminAddr = "127.0.0.1:0"
		in, err := NewIngester(cfg, bus, zaptest.NewLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		pub := httptest.NewServer(in.Handler())
		defer pub.Close()
		for path, want := range map[string]int{"/metrics": 404, "/v1/jobs/admin-job": 404,
			"/healthz": 200, "/readyz": 200} {
			if got := get(t, pub.URL+path, nil); got != want {
				t.Errorf("callback port %s: %d, want %d", path, got, want)
			}
		}
		ln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- in.ServeAdmin(ctx, ln) }()
		base := "http://" + ln.Addr().String()
		for path, want := range map[string]int{"/metrics": 200, "/v1/jobs/admin-job": 200,
			"/v1/jobs/nope": 404, "/healthz": 200, "/readyz": 200, CallbackPath: 404} {
			if got := get(t, base+path, xff); got != want {
				t.Errorf("admin %s: %d, want %d", path, got, want)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("ServeAdmin: %v", err)
		}
	})
}

// TestServeStopsSilentConnections: a connection that was opened but never
// sent a request (an HTTP client's spare dial) must not hold Serve's
// shutdown; net/http alone waits about 5 s for such a connection.
func TestServeStopsSilentConnections(t *testing.T) {
	bus := queuetest.Bus(t)
	in, err := NewIngester(testConfig(), bus, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- in.Serve(ctx, ln) }()

	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	queuetest.Eventually(t, 5*time.Second, "the silent connection to be accepted", func() bool {
		return in.silentConns() == 1
	})

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Serve still waits for a connection that sent nothing")
	}
	_ = silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := silent.Read(make([]byte, 1)); err == nil {
		t.Fatal("the silent connection is still open")
	}
}
