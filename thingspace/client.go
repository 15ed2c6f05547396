package thingspace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// maxResponseBody bounds what is read of any answer.
const maxResponseBody = 1 << 20

// Client calls ThingSpace. It is safe for concurrent use; all goroutines
// share one access token and one session.
type Client struct {
	cfg     Config
	base    string
	hc      *http.Client
	log     *zap.Logger
	tokens  *tokenCache
	session *session
	guard   LoginGuard
}

// Option changes how New builds the client.
type Option func(*Client)

// WithHTTPClient makes the client use hc (its Timeout is left as is; the
// per-request timeout comes from Config.RequestTimeout).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *Client) { c.hc = hc }
}

// LoginGuard shares the count of rejected logins between every process
// that logs in with the same username: ThingSpace locks the account after
// five rejected logins in a row, whoever makes them, so a per-process cap
// is not enough once a second process or a restart tries again.
type LoginGuard interface {
	// Reserve counts one more attempt when fewer than limit rejected
	// logins in a row are recorded, and reports the count with it;
	// ok is false, and nothing is counted, at the limit.
	Reserve(ctx context.Context, limit int) (n int, ok bool, err error)
	// Release takes back a reserved attempt that was never judged.
	Release(ctx context.Context) error
	// Reset clears the count after a successful login.
	Reset(ctx context.Context) error
}

// WithLoginGuard makes every login attempt count against g first.
func WithLoginGuard(g LoginGuard) Option {
	return func(c *Client) { c.guard = g }
}

// New returns a client. Nothing is sent until the first call.
func New(cfg Config, log *zap.Logger, opts ...Option) (*Client, error) {
	cfg = cfg.Defaulted()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	c := &Client{
		cfg:  cfg,
		base: strings.TrimRight(cfg.BaseURL, "/"),
		log:  log.Named("thingspace"),
	}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		c.hc = &http.Client{Transport: t}
	}
	c.tokens = newTokenCache(c.base, cfg.ClientID, cfg.ClientSecret.Reveal(), c.hc, cfg.TokenMargin, c.log)
	c.session = newSession(c)
	return c, nil
}

// exchange is one HTTP call with both tokens.
type exchange struct {
	op       string
	method   string
	path     string
	bearer   string
	session  string
	body     []byte
	out      any
	mutating bool
}

// send performs one HTTP exchange and classifies its failure as *Error.
func (c *Client) send(ctx context.Context, x exchange) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()

	// Whether the request left this process decides MaybeExecuted.
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { wrote.Store(true) },
	})
	var body io.Reader
	if x.body != nil {
		body = bytes.NewReader(x.body)
	}
	req, err := http.NewRequestWithContext(ctx, x.method, c.base+x.path, body)
	if err != nil {
		return &Error{Op: x.op, Kind: KindPermanent, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	if x.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if x.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+x.bearer)
	}
	if x.session != "" {
		req.Header.Set("VZ-M2M-Token", x.session)
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return &Error{Op: x.op, Kind: KindTransient, MaybeExecuted: x.mutating && wrote.Load(),
			Err: netCause(err)}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBody))
	if err != nil {
		return &Error{Op: x.op, Kind: KindTransient, Status: resp.StatusCode,
			MaybeExecuted: x.mutating, Err: fmt.Errorf("reading answer: %w", netCause(err))}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := decodeError(x.op, resp.StatusCode, resp.Header, data, time.Now())
		e.MaybeExecuted = e.MaybeExecuted && x.mutating
		return e
	}
	if x.out != nil && len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, x.out); err != nil {
			return &Error{Op: x.op, Kind: KindTransient, Status: resp.StatusCode,
				MaybeExecuted: x.mutating, Err: fmt.Errorf("decoding answer: %w", err)}
		}
	}
	return nil
}

// netCause keeps the context error recognisable (errors.Is) while the URL
// in a *url.Error names only the host and path, never a secret.
func netCause(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("request timed out: %w", err)
	}
	return err
}

// call performs an M2M call with both tokens. A refused bearer is renewed
// once and a session ThingSpace calls expired, invalid or malformed is
// renewed once (single flight); a second refusal is returned, never looped.
func (c *Client) call(ctx context.Context, op, method, path string, in, out any, mutating bool) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return &Error{Op: op, Kind: KindPermanent, Err: fmt.Errorf("encoding request: %w", err)}
		}
		body = b
	}
	tokenRenewed, sessionRenewed := false, false
	for {
		bearer, err := c.tokens.get(ctx, c.cfg.RequestTimeout)
		if err != nil {
			return err
		}
		sess, err := c.session.get(ctx)
		if err != nil {
			return err
		}
		err = c.send(ctx, exchange{op: op, method: method, path: path, bearer: bearer,
			session: sess, body: body, out: out, mutating: mutating})
		var e *Error
		if !errors.As(err, &e) {
			return err
		}
		switch {
		case e.Status == http.StatusUnauthorized && !tokenRenewed:
			tokenRenewed = true
			c.log.Warn("access_token_refused", zap.String("op", op), zap.String("code", e.Code))
			c.tokens.invalidate(bearer)
			continue
		case isSessionCode(e.RawCode) && !sessionRenewed:
			sessionRenewed = true
			c.log.Warn("session_refused", zap.String("op", op), zap.String("code", e.Code))
			c.session.invalidate(sess)
			continue
		}
		return e
	}
}
