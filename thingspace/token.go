package thingspace

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// unknownTokenLife is assumed when the token answer carries no expires_in.
const unknownTokenLife = 5 * time.Minute

// tokenCache holds the access token for all goroutines and renews it before
// it expires. ThingSpace answers a renewal within the token's hour with the
// same token, so a renewal that returns the token already held is kept
// until its real expiry instead of being asked for again on every call.
type tokenCache struct {
	conf   clientcredentials.Config
	hc     *http.Client
	margin time.Duration
	log    *zap.Logger
	now    func() time.Time

	// sem is held while fetching, so concurrent callers fetch once.
	sem     chan struct{}
	mu      sync.Mutex
	tok     string
	expiry  time.Time
	renewAt time.Time
}

func newTokenCache(baseURL, id, secret string, hc *http.Client, margin time.Duration,
	log *zap.Logger) *tokenCache {
	return &tokenCache{
		conf: clientcredentials.Config{
			ClientID:     id,
			ClientSecret: secret,
			TokenURL:     baseURL + "/ts/v1/oauth2/token",
			AuthStyle:    oauth2.AuthStyleInHeader,
		},
		hc:     hc,
		margin: margin,
		log:    log,
		now:    time.Now,
		sem:    make(chan struct{}, 1),
	}
}

// cached returns the token when it needs no renewal.
func (t *tokenCache) cached() (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != "" && t.now().Before(t.renewAt) {
		return t.tok, true
	}
	return "", false
}

// get returns a usable access token, fetching one when needed.
func (t *tokenCache) get(ctx context.Context, timeout time.Duration) (string, error) {
	if tok, ok := t.cached(); ok {
		return tok, nil
	}
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return "", &Error{Op: "token", Kind: KindTransient, Err: ctx.Err()}
	}
	defer func() { <-t.sem }()
	if tok, ok := t.cached(); ok {
		return tok, nil // fetched by another goroutine meanwhile
	}
	return t.fetch(ctx, timeout)
}

func (t *tokenCache) fetch(ctx context.Context, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, t.hc)
	tok, err := t.conf.Token(ctx)
	if err != nil {
		return "", tokenError(err)
	}
	now := t.now()
	expiry := tok.Expiry
	if expiry.IsZero() {
		expiry = now.Add(unknownTokenLife)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	renewAt := expiry.Add(-t.margin)
	if tok.AccessToken == t.tok || !renewAt.After(now) {
		// Same token again (or one about to lapse): use it to its end.
		renewAt = expiry
	}
	if tok.AccessToken != t.tok {
		t.log.Debug("access_token_renewed", zap.Time("expiry", expiry))
	}
	t.tok, t.expiry, t.renewAt = tok.AccessToken, expiry, renewAt
	return t.tok, nil
}

// invalidate drops tok after ThingSpace refused it, so the next get asks
// for a new one. A token already replaced is left alone.
func (t *tokenCache) invalidate(tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok == tok {
		t.tok = ""
		t.renewAt = time.Time{}
	}
}

// tokenError classifies a failed token fetch. The oauth2 error text names
// the token URL only, never the client secret.
func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		return decodeError("token", re.Response.StatusCode, re.Response.Header, re.Body, time.Now())
	}
	return &Error{Op: "token", Kind: KindTransient, Err: err}
}
