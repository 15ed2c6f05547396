package sim

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Session error codes, as ThingSpace sends them with HTTP 400.
const (
	CodeSessionExpired = "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired"
	CodeSessionInvalid = "UnifiedWebService.REQUEST_FAILED.SessionToken.Invalid"
	CodeSessionFormat  = "UnifiedWebService.REQUEST_FAILED.SessionToken.Format"
	CodeLoginFailed    = "UnifiedWebService.REQUEST_FAILED.Login.InvalidCredentials"
	CodeAccountLocked  = "UnifiedWebService.REQUEST_FAILED.Login.AccountLocked"
)

type simSession struct {
	lastUsed time.Time
	expired  bool
}

func equal(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// fault answers in the API gateway's shape.
func (s *Sim) fault(w http.ResponseWriter, code int, msg string) {
	var c any = itoa(code)
	if s.cfg.NumericFaultCode {
		c = code
	}
	writeJSON(w, http.StatusUnauthorized, map[string]any{
		"fault": map[string]any{"code": c, "message": msg},
	})
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func (s *Sim) handleToken(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if ok {
		// RFC 6749 form-encodes both before the Basic encoding.
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	}
	if !ok || !equal(id, s.cfg.ClientID) || !equal(secret, s.cfg.ClientSecret) {
		writeJSON(w, http.StatusUnauthorized, map[string]string{
			"error": "invalid_client", "error_description": "Client authentication failed",
		})
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]string{
			"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials",
		})
		return
	}

	now := time.Now()
	s.mu.Lock()
	if s.token == "" || !now.Before(s.tokenExp) {
		// Within its hour the same token is handed out again.
		s.token, s.tokenExp = randomToken(), now.Add(s.cfg.TokenTTL)
		s.tokens[s.token] = s.tokenExp
		s.stats.TokensIssued++
		for t, exp := range s.tokens {
			if !now.Before(exp) {
				delete(s.tokens, t)
			}
		}
	}
	tok, left := s.token, s.tokenExp.Sub(now)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		// Rounded up so a client never renews just before the real end.
		"expires_in": int64(math.Ceil(left.Seconds())),
		"scope":      "default",
	})
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// checkBearer answers 401 unless the request carries a live access token.
func (s *Sim) checkBearer(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if h == "" || !ok || tok == "" {
		s.fault(w, 900902, "Missing Credentials")
		return false
	}
	s.mu.Lock()
	exp, known := s.tokens[tok]
	s.mu.Unlock()
	if !known || !time.Now().Before(exp) {
		s.fault(w, 900901, "Invalid Credentials")
		return false
	}
	return true
}

// checkSession answers 400 unless the request carries a live session,
// and marks the session used.
func (s *Sim) checkSession(w http.ResponseWriter, r *http.Request) bool {
	tok := r.Header.Get("VZ-M2M-Token")
	if tok == "" {
		m2mError(w, http.StatusBadRequest, CodeSessionInvalid, "VZ-M2M-Token header is missing")
		return false
	}
	if _, err := uuid.Parse(tok); err != nil || len(tok) != 36 {
		m2mError(w, http.StatusBadRequest, CodeSessionFormat, "Session token format is invalid")
		return false
	}
	now := time.Now()
	s.mu.Lock()
	ss := s.sessions[tok]
	if ss != nil && !ss.expired && now.Sub(ss.lastUsed) > s.cfg.SessionIdle {
		ss.expired = true
	}
	switch {
	case ss == nil:
		s.mu.Unlock()
		m2mError(w, http.StatusBadRequest, CodeSessionInvalid, "Session token is invalid")
		return false
	case ss.expired:
		s.mu.Unlock()
		m2mError(w, http.StatusBadRequest, CodeSessionExpired, "Session token is expired")
		return false
	}
	ss.lastUsed = now
	s.mu.Unlock()
	return true
}

type loginBody struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (s *Sim) handleLogin(w http.ResponseWriter, r *http.Request) {
	if !s.checkBearer(w, r) {
		return
	}
	var b loginBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		m2mError(w, http.StatusBadRequest, "UnifiedWebService.INPUT_INVALID.Body.Malformed",
			"request body is not valid JSON")
		return
	}
	good := equal(b.Username, s.cfg.Username) && equal(b.Password, s.cfg.Password)

	s.mu.Lock()
	if s.locked {
		s.stats.LoginFailures++
		s.mu.Unlock()
		m2mError(w, http.StatusBadRequest, CodeAccountLocked, "Account is locked")
		return
	}
	if !good {
		s.failedRow++
		s.stats.LoginFailures++
		s.locked = s.failedRow >= s.cfg.LockoutAfter
		s.mu.Unlock()
		m2mError(w, http.StatusBadRequest, CodeLoginFailed, "Invalid username or password")
		return
	}
	s.failedRow = 0
	tok := uuid.NewString()
	s.sessions[tok] = &simSession{lastUsed: time.Now()}
	s.stats.Logins++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"sessionToken": tok})
}

func (s *Sim) handleLogout(w http.ResponseWriter, r *http.Request) {
	if !s.checkBearer(w, r) || !s.checkSession(w, r) {
		return
	}
	s.mu.Lock()
	delete(s.sessions, r.Header.Get("VZ-M2M-Token"))
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"success": true})
}

// allow applies the rate limit, answering 429 with Retry-After when over.
func (s *Sim) allow(w http.ResponseWriter) bool {
	if s.limiter == nil || s.limiter.Allow() {
		return true
	}
	res := s.limiter.Reserve()
	d := res.Delay()
	res.Cancel()
	secs := int64(math.Ceil(d.Seconds()))
	if secs < 1 {
		secs = 1
	}
	s.mu.Lock()
	s.stats.RateLimited++
	s.mu.Unlock()
	w.Header().Set("Retry-After", itoa(int(secs)))
	m2mError(w, http.StatusTooManyRequests, "UnifiedWebService.REQUEST_FAILED.RateLimit.Exceeded",
		"Too many requests")
	return false
}

// guard runs the checks every M2M call other than login passes.
func (s *Sim) guard(w http.ResponseWriter, r *http.Request) bool {
	return s.checkBearer(w, r) && s.checkSession(w, r) && s.allow(w)
}
