package thingspace

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// session holds the M2M session token for all goroutines. Logins are
// single flight: one goroutine logs in while the others wait for its
// result. Consecutive rejected logins are capped below ThingSpace's lockout
// of five; at the cap the session stops for good.
type session struct {
	c   *Client
	sem chan struct{}

	mu       sync.Mutex
	token    string
	failures int
	nextTry  time.Time
	stopped  *Error
}

func newSession(c *Client) *session {
	return &session{c: c, sem: make(chan struct{}, 1)}
}

func (s *session) current() (string, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token, s.stopped
}

// get returns the session token, logging in when there is none.
func (s *session) get(ctx context.Context) (string, error) {
	if tok, stop := s.current(); stop != nil {
		return "", stop
	} else if tok != "" {
		return tok, nil
	}
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return "", &Error{Op: "login", Kind: KindTransient, Err: ctx.Err()}
	}
	defer func() { <-s.sem }()
	if tok, stop := s.current(); stop != nil {
		return "", stop
	} else if tok != "" {
		return tok, nil // another goroutine logged in meanwhile
	}
	return s.loginLoop(ctx)
}

// invalidate forgets tok after ThingSpace refused it. A token already
// replaced by a newer login is kept, so N goroutines that saw the same
// expiry cause one login.
func (s *session) invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == tok {
		s.token = ""
	}
}

// loginLoop logs in, retrying rejected logins with back-off until the cap.
// Transient failures (network, 5xx, 429) are returned to the caller and do
// not count: the password was not judged.
func (s *session) loginLoop(ctx context.Context) (string, error) {
	cfg := s.c.cfg
	for {
		s.mu.Lock()
		wait := time.Until(s.nextTry)
		s.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return "", &Error{Op: "login", Kind: KindTransient, Err: ctx.Err()}
			}
		}

		shared, err := s.reserve(ctx)
		if err != nil {
			return "", err
		}
		tok, err := s.login(ctx)
		s.mu.Lock()
		if err == nil {
			s.token, s.failures, s.nextTry = tok, 0, time.Time{}
			s.mu.Unlock()
			s.settle(ctx, true)
			s.c.log.Info("session_login")
			return tok, nil
		}
		var e *Error
		if !errors.As(err, &e) || e.Kind == KindTransient || e.Kind == KindRateLimited {
			s.nextTry = time.Now().Add(cfg.LoginBackoff)
			s.mu.Unlock()
			s.settle(ctx, false)
			s.c.log.Warn("session_login_failed", zap.Error(err))
			return "", err
		}
		// The rejected attempt stays counted in the guard.
		s.failures = max(s.failures+1, shared)
		if s.failures >= cfg.LoginAttempts {
			s.stopped = &Error{Op: "login", Kind: KindAuth, Status: e.Status, Code: e.Code,
				RawCode: e.RawCode, Message: e.Message, Err: ErrLoginStopped}
			n := s.failures
			s.mu.Unlock()
			s.c.log.Error("session_login_stopped", zap.Int("failures", n), zap.Error(e))
			return "", s.stopped
		}
		s.nextTry = time.Now().Add(cfg.LoginBackoff << (s.failures - 1))
		n := s.failures
		s.mu.Unlock()
		s.c.log.Warn("session_login_rejected", zap.Int("failures", n), zap.Error(e))
	}
}

// reserve counts the coming attempt with the login guard, if there is
// one, and returns the rejected logins in a row it then counts (this one
// included). At the cap it stops the session without trying: other
// processes already spent the attempts.
func (s *session) reserve(ctx context.Context) (int, error) {
	g := s.c.guard
	if g == nil {
		return 0, nil
	}
	n, ok, err := g.Reserve(ctx, s.c.cfg.LoginAttempts)
	if err != nil {
		// Without the shared count a login could be the fifth one.
		return 0, &Error{Op: "login", Kind: KindTransient,
			Message: "cannot check the shared count of rejected logins", Err: err}
	}
	if ok {
		return n, nil
	}
	s.mu.Lock()
	s.stopped = &Error{Op: "login", Kind: KindAuth, Err: ErrLoginStopped,
		Message: fmt.Sprintf("%d rejected logins in a row are recorded for this username across the deployment; "+
			"fix the credentials, then run `tsfallback login reset`", n)}
	stop := s.stopped
	s.mu.Unlock()
	s.c.log.Error("session_login_stopped", zap.Int("failures", n), zap.Bool("shared", true))
	return 0, stop
}

// settle tells the guard how a reserved attempt ended: a success clears the
// count, an attempt that was never judged (network, 5xx) is taken back.
func (s *session) settle(ctx context.Context, succeeded bool) {
	g := s.c.guard
	if g == nil {
		return
	}
	var err error
	if succeeded {
		err = g.Reset(ctx)
	} else {
		err = g.Release(ctx)
	}
	if err != nil {
		// Only errs on the side of fewer attempts later.
		s.c.log.Warn("login_guard_update_failed", zap.Error(err))
	}
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type loginResponse struct {
	SessionToken string `json:"sessionToken"`
}

// login performs one login, renewing a refused bearer once.
func (s *session) login(ctx context.Context) (string, error) {
	c := s.c
	body, err := jsonBody(loginRequest{Username: c.cfg.Username, Password: c.cfg.Password.Reveal()})
	if err != nil {
		return "", &Error{Op: "login", Kind: KindPermanent, Err: err}
	}
	for renewed := false; ; renewed = true {
		bearer, err := c.tokens.get(ctx, c.cfg.RequestTimeout)
		if err != nil {
			return "", err
		}
		var out loginResponse
		err = c.send(ctx, exchange{op: "login", method: http.MethodPost,
			path: "/m2m/v1/session/login", bearer: bearer, body: body, out: &out})
		var e *Error
		if errors.As(err, &e) && e.Status == http.StatusUnauthorized && !renewed {
			c.tokens.invalidate(bearer)
			continue
		}
		if err != nil {
			return "", err
		}
		if out.SessionToken == "" {
			return "", &Error{Op: "login", Kind: KindTransient, Status: http.StatusOK,
				Message: "answer carries no sessionToken"}
		}
		return out.SessionToken, nil
	}
}

// Logout ends the session, if any. Callbacks keep coming after it.
func (c *Client) Logout(ctx context.Context) error {
	c.session.mu.Lock()
	tok := c.session.token
	c.session.token = ""
	c.session.mu.Unlock()
	if tok == "" {
		return nil
	}
	bearer, err := c.tokens.get(ctx, c.cfg.RequestTimeout)
	if err != nil {
		return err
	}
	return c.send(ctx, exchange{op: "logout", method: http.MethodPost,
		path: "/m2m/v1/session/logout", bearer: bearer, session: tok, body: []byte("{}")})
}
