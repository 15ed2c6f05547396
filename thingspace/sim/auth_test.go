package sim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/thingspace/sim"
)

type rawSim struct {
	t    *testing.T
	s    *sim.Sim
	base string
}

func startRaw(t *testing.T, cfg sim.Config) *rawSim {
	s, err := sim.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return &rawSim{t: t, s: s, base: base}
}

func (r *rawSim) do(method, path string, h map[string]string, body string) (int, map[string]any) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		r.t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return resp.StatusCode, m
}

func (r *rawSim) token() (string, float64) {
	r.t.Helper()
	req, _ := http.NewRequest("POST", r.base+"/ts/v1/oauth2/token",
		strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(sim.DefaultClientID, sim.DefaultClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != 200 {
		r.t.Fatalf("token: %d %v", resp.StatusCode, m)
	}
	return m["access_token"].(string), m["expires_in"].(float64)
}

func (r *rawSim) login(bearer, password string) (int, map[string]any) {
	return r.do("POST", "/m2m/v1/session/login", map[string]string{"Authorization": "Bearer " + bearer},
		`{"username":"sim-user","password":"`+password+`"}`)
}

func faultCode(m map[string]any) any {
	f, _ := m["fault"].(map[string]any)
	return f["code"]
}

func TestBearerChecks(t *testing.T) {
	r := startRaw(t, sim.Config{})
	code, m := r.do("POST", "/m2m/v1/session/login", nil, `{}`)
	if code != 401 || faultCode(m) != "900902" {
		t.Fatalf("missing bearer: %d %v", code, m)
	}
	code, m = r.do("POST", "/m2m/v1/session/login", map[string]string{"Authorization": "Bearer nope"}, `{}`)
	if code != 401 || faultCode(m) != "900901" {
		t.Fatalf("bad bearer: %d %v", code, m)
	}

	n := startRaw(t, sim.Config{NumericFaultCode: true})
	code, m = n.do("GET", "/m2m/v1/callbacks/0000123456-00001", map[string]string{"Authorization": "Bearer x"}, ``)
	if code != 401 || faultCode(m) != float64(900901) {
		t.Fatalf("numeric: %d %v", code, m)
	}
}

func TestTokenSameWithinLifetime(t *testing.T) {
	r := startRaw(t, sim.Config{})
	a, ea := r.token()
	b, eb := r.token()
	if a != b || ea != 3600 || eb > ea {
		t.Fatalf("tokens %q %v, %q %v", a, ea, b, eb)
	}
	r.s.ExpireTokens()
	c, _ := r.token()
	if c == a {
		t.Fatal("expired token handed out again")
	}
}

func TestSessionChecks(t *testing.T) {
	r := startRaw(t, sim.Config{SessionIdle: 50 * time.Millisecond})
	tok, _ := r.token()
	bearer := map[string]string{"Authorization": "Bearer " + tok}
	path := "/m2m/v1/callbacks/0000123456-00001"
	errCode := func(sess string) (int, any) {
		h := map[string]string{"Authorization": "Bearer " + tok}
		if sess != "" {
			h["VZ-M2M-Token"] = sess
		}
		code, m := r.do("GET", path, h, ``)
		return code, m["errorCode"]
	}
	if code, c := errCode("not-a-uuid"); code != 400 || c != sim.CodeSessionFormat {
		t.Fatalf("format: %d %v", code, c)
	}
	if code, c := errCode("6f1c7d3e-0000-4000-8000-000000000000"); code != 400 || c != sim.CodeSessionInvalid {
		t.Fatalf("unknown: %d %v", code, c)
	}
	code, m := r.do("POST", "/m2m/v1/session/login", bearer, `{"username":"sim-user","password":"sim-password"}`)
	if code != 200 {
		t.Fatalf("login: %d %v", code, m)
	}
	sess := m["sessionToken"].(string)
	if code, _ := errCode(sess); code != 200 {
		t.Fatalf("fresh session: %d", code)
	}
	// Each check uses the session and so keeps it alive: the only way to
	// see the idle expiry is to stay idle longer than SessionIdle.
	time.Sleep(120 * time.Millisecond)
	if code, c := errCode(sess); code != 400 || c != sim.CodeSessionExpired {
		t.Fatalf("idle session: %d %v", code, c)
	}
}

func TestLockoutAfterFiveFailures(t *testing.T) {
	r := startRaw(t, sim.Config{})
	tok, _ := r.token()
	for i := 0; i < 5; i++ {
		if code, m := r.login(tok, "bad"); code != 400 || m["errorCode"] != sim.CodeLoginFailed {
			t.Fatalf("failure %d: %d %v", i, code, m)
		}
	}
	if code, m := r.login(tok, sim.DefaultPassword); code != 400 || m["errorCode"] != sim.CodeAccountLocked {
		t.Fatalf("locked login: %d %v", code, m)
	}
	r.s.Unlock()
	if code, m := r.login(tok, sim.DefaultPassword); code != 200 || m["sessionToken"] == nil {
		t.Fatalf("after unlock: %d %v", code, m)
	}
	if st := r.s.Stats(); st.Logins != 1 || st.LoginFailures != 6 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestTokenRefusesBadClient(t *testing.T) {
	r := startRaw(t, sim.Config{})
	req, _ := http.NewRequest("POST", r.base+"/ts/v1/oauth2/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(sim.DefaultClientID, "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	if resp.StatusCode != 401 || m["error"] != "invalid_client" {
		t.Fatalf("%d %v", resp.StatusCode, m)
	}
}
