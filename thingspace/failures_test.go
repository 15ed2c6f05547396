package thingspace_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/thingspace/sim"
	"github.com/tsfallback/tsfallback/thingspace/sim/simtest"
)

func submit(ctx context.Context, c *thingspace.Client, devs []model.Device) (string, error) {
	return c.SetFallbackAttribute(ctx, model.SetFallbackRequest{AccountName: testAccount, Devices: devs})
}

func loginAttempts(st sim.Stats) int64 {
	var n int64
	for _, v := range st.Requests["login"] {
		n += v
	}
	return n
}

// A session that expires in the middle of a run of 1,000 devices costs
// exactly one login, however many goroutines see the expiry.
func TestSessionExpiryMidRunCostsOneLogin(t *testing.T) {
	s, base := startSim(t, sim.Config{})
	c := newClient(t, clientConfig(base))
	ctx := context.Background()
	devs := devices(2, 1000)

	for i := 0; i < 3; i++ {
		if _, err := submit(ctx, c, devs[i*100:(i+1)*100]); err != nil {
			t.Fatal(err)
		}
	}
	s.ExpireSessions()
	var wg sync.WaitGroup
	errs := make(chan error, 7)
	for i := 3; i < 10; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := submit(ctx, c, devs[i*100:(i+1)*100]); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Logins != 2 || loginAttempts(st) != 2 {
		t.Fatalf("logins = %d (attempts %d), want 2: one at start, one after expiry",
			st.Logins, loginAttempts(st))
	}
	if st.RequestsAccepted != 10 || st.DevicesSubmitted != 1000 || st.DevicesResubmitted != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestUnknownSessionRelogsOnce(t *testing.T) {
	s, base := startSim(t, sim.Config{})
	c := newClient(t, clientConfig(base))
	ctx := context.Background()
	if _, err := c.ListCallbacks(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	s.ForgetSessions()
	if _, err := c.ListCallbacks(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Logins != 2 || st.Requests["callbacks.list"]["400"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestWrongPasswordNeverExceedsCap(t *testing.T) {
	s, base := startSim(t, sim.Config{})
	cfg := clientConfig(base)
	cfg.Password = "wrong-password"
	c := newClient(t, cfg)
	ctx := context.Background()

	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 5; k++ {
				_, err := submit(ctx, c, devices(3, 1))
				if !errors.Is(err, thingspace.ErrLoginStopped) || !thingspace.IsAuth(err) {
					t.Errorf("err = %v, want ErrLoginStopped", err)
					return
				}
				if strings.Contains(err.Error(), "wrong-password") || strings.Contains(err.Error(), sim.DefaultClientSecret) {
					t.Errorf("secret in error: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if n := loginAttempts(st); n != thingspace.DefaultLoginAttempts {
		t.Fatalf("login attempts = %d, want %d", n, thingspace.DefaultLoginAttempts)
	}
	if s.Locked() || st.DevicesSubmitted != 0 {
		t.Fatalf("locked=%v stats=%+v", s.Locked(), st)
	}
}

func TestWrongClientSecret(t *testing.T) {
	_, base := startSim(t, sim.Config{})
	cfg := clientConfig(base)
	cfg.ClientSecret = "not-the-secret"
	c := newClient(t, cfg)
	_, err := submit(context.Background(), c, devices(4, 1))
	var e *thingspace.Error
	if !errors.As(err, &e) || e.Kind != thingspace.KindAuth || e.Code != "invalid_client" {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Fatalf("secret in error: %v", err)
	}
}

func TestExpiredTokenRenewedOnce(t *testing.T) {
	s, base := startSim(t, sim.Config{})
	c := newClient(t, clientConfig(base))
	ctx := context.Background()
	if _, err := c.ListCallbacks(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	s.ExpireTokens()
	if _, err := c.ListCallbacks(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.TokensIssued != 2 || st.Requests["callbacks.list"]["401"] != 1 || st.Logins != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

// A bearer refused twice in a row is a credential error, not a loop.
func TestBearerRefusedTwiceIsAuthError(t *testing.T) {
	s, err := sim.New(sim.Config{NumericFaultCode: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	var tokenCalls, m2mCalls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/oauth2/token") || strings.HasSuffix(r.URL.Path, "/login") {
			if strings.HasSuffix(r.URL.Path, "/oauth2/token") {
				tokenCalls++
			}
			s.Handler().ServeHTTP(w, r)
			return
		}
		m2mCalls++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"fault":{"code":900901,"message":"Invalid Credentials"}}`))
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, clientConfig(srv.URL+"/api"))
	_, err = c.ListCallbacks(context.Background(), testAccount)
	var e *thingspace.Error
	if !errors.As(err, &e) || e.Kind != thingspace.KindAuth || e.Code != "900901" {
		t.Fatalf("err = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if tokenCalls != 2 || m2mCalls != 2 {
		t.Fatalf("token calls %d, m2m calls %d, want 2 and 2", tokenCalls, m2mCalls)
	}
}

// A session refused again right after a fresh login is returned, not
// retried again.
func TestSessionRefusedTwiceIsAuthError(t *testing.T) {
	s, err := sim.New(sim.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/setfallbackattribute") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"errorCode":"UnifiedWebService.REQUEST_FAILED.SessionToken.Expired","errorMessage":"expired"}`))
			return
		}
		s.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, clientConfig(srv.URL+"/api"))
	_, err = submit(context.Background(), c, devices(5, 1))
	if !thingspace.IsAuth(err) || !strings.Contains(err.Error(), "SessionToken.Expired") {
		t.Fatalf("err = %v", err)
	}
	if st := s.Stats(); st.Logins != 2 {
		t.Fatalf("logins = %d, want 2", st.Logins)
	}
}

func TestRateLimited(t *testing.T) {
	s, base := startSim(t, sim.Config{RateRPS: 0.5, RateBurst: 1})
	c := newClient(t, clientConfig(base))
	ctx := context.Background()
	if _, err := submit(ctx, c, devices(6, 1)); err != nil {
		t.Fatal(err)
	}
	_, err := submit(ctx, c, devices(7, 1))
	d, ok := thingspace.IsRateLimited(err)
	if !ok || d < time.Second || d > 2*time.Second {
		t.Fatalf("err = %v (retry after %s)", err, d)
	}
	if st := s.Stats(); st.RateLimited != 1 || st.RequestsAccepted != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestServerErrorNotExecuted(t *testing.T) {
	s, base := startSim(t, sim.Config{ErrorRatio: 1})
	c := newClient(t, clientConfig(base))
	_, err := submit(context.Background(), c, devices(8, 10))
	if !thingspace.IsTransient(err) || thingspace.MaybeExecuted(err) {
		t.Fatalf("err = %v", err)
	}
	if st := s.Stats(); st.DevicesSubmitted != 0 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestTimeoutMayHaveExecuted(t *testing.T) {
	s, base := startSim(t, sim.Config{TimeoutRatio: 1, TimeoutDelay: 3 * time.Second})
	l := simtest.NewListener(t)
	cfg := clientConfig(base)
	c := newClient(t, cfg)
	register(t, c, l)

	cfg.RequestTimeout = 200 * time.Millisecond
	short := newClient(t, cfg)
	_, err := submit(context.Background(), short, devices(9, 10))
	if !thingspace.IsTransient(err) || !thingspace.MaybeExecuted(err) ||
		!errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	idle(t, s)
	if st := s.Stats(); st.DevicesSubmitted != 10 || len(l.Raw()) != 10 {
		t.Fatalf("stats = %+v, callbacks %d", st, len(l.Raw()))
	}
}

func TestDroppedConnectionMayHaveExecuted(t *testing.T) {
	s, base := startSim(t, sim.Config{DropRatio: 1})
	c := newClient(t, clientConfig(base))
	_, err := submit(context.Background(), c, devices(10, 5))
	if !thingspace.IsTransient(err) || !thingspace.MaybeExecuted(err) {
		t.Fatalf("err = %v", err)
	}
	// The counter is written when the handler returns, which may be just
	// after the client saw the closed connection.
	deadline := time.Now().Add(5 * time.Second)
	for st := s.Stats(); st.DevicesSubmitted != 5 || st.Requests["setfallbackattribute"]["dropped"] != 1; st = s.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats = %+v", st)
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}
}

func TestConnectionRefusedNotExecuted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	c := newClient(t, clientConfig("http://"+addr+"/api"))
	_, err = submit(context.Background(), c, devices(11, 1))
	if !thingspace.IsTransient(err) || thingspace.MaybeExecuted(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestValidationErrors(t *testing.T) {
	_, base := startSim(t, sim.Config{})
	cfg := clientConfig(base)
	cfg.MaxDevices = 200
	c := newClient(t, cfg)
	ctx := context.Background()
	good := devices(12, 1)[0]
	tests := []struct {
		name    string
		account string
		devs    []model.Device
		code    string
	}{
		{"account name", "123-45", []model.Device{good}, "INPUT_INVALID.AccountName.Invalid"},
		{"too many devices", testAccount, devices(13, 101), "INPUT_INVALID.Devices.TooMany"},
		{"bad eid", testAccount, []model.Device{{DeviceIDs: []model.DeviceID{{Kind: "eid", ID: "1234"}}}},
			"INPUT_INVALID.DeviceId.Invalid"},
		{"unknown kind", testAccount, []model.Device{{DeviceIDs: []model.DeviceID{{Kind: "msisdn", ID: "1"}}}},
			"INPUT_INVALID.DeviceId.Invalid"},
		{"missing kind", testAccount, []model.Device{{DeviceIDs: []model.DeviceID{{ID: good.DeviceIDs[0].ID}}}},
			"INPUT_INVALID.DeviceId.Missing"},
		{"no ids", testAccount, []model.Device{{}}, "INPUT_INVALID.DeviceId.Missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.SetFallbackAttribute(ctx, model.SetFallbackRequest{AccountName: tt.account, Devices: tt.devs})
			var e *thingspace.Error
			if !errors.As(err, &e) || e.Kind != thingspace.KindPermanent || e.Code != tt.code || e.Status != 400 {
				t.Fatalf("err = %v, want permanent %s", err, tt.code)
			}
		})
	}

	small := newClient(t, clientConfig(base))
	_, err := submit(ctx, small, devices(14, 101))
	if !errors.Is(err, thingspace.ErrTooManyDevices) || !thingspace.IsPermanent(err) {
		t.Fatalf("err = %v", err)
	}
}

// The token is asked for once while it is valid, and renewing it near its
// end does not loop when ThingSpace hands back the same token.
func TestTokenCachedAndRenewedWithoutLoop(t *testing.T) {
	s, base := startSim(t, sim.Config{TokenTTL: 1500 * time.Millisecond})
	cfg := clientConfig(base)
	cfg.TokenMargin = time.Second
	c := newClient(t, cfg)
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Second)
	calls := 0
	for time.Now().Before(deadline) && calls < 50000 {
		if _, err := c.ListCallbacks(ctx, testAccount); err != nil {
			t.Fatal(err)
		}
		calls++
	}
	st := s.Stats()
	tokenRequests := st.Requests["token"]["200"]
	if st.TokensIssued < 2 || st.TokensIssued > 3 || tokenRequests > 6 {
		t.Fatalf("%d calls: %d tokens issued, %d token requests", calls, st.TokensIssued, tokenRequests)
	}
	if st.Requests["callbacks.list"]["401"] > 1 {
		t.Fatalf("401s = %d", st.Requests["callbacks.list"]["401"])
	}
}

func TestLogout(t *testing.T) {
	s, base := startSim(t, sim.Config{})
	c := newClient(t, clientConfig(base))
	ctx := context.Background()
	if _, err := c.ListCallbacks(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	if err := c.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ListCallbacks(ctx, testAccount); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Logins != 2 || st.Requests["logout"]["200"] != 1 {
		t.Fatalf("stats = %+v", st)
	}
}
