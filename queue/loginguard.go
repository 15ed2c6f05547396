package queue

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LoginGuard keeps the count of rejected ThingSpace logins in a row in KV,
// shared by every process that logs in with the same username, so that
// restarts and extra workers cannot add up to the five that lock the
// account. It satisfies thingspace.LoginGuard.
type LoginGuard struct {
	kv  jetstream.KeyValue
	key string
}

type loginCount struct {
	Failures  int       `json:"failures"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// NewLoginGuard returns the guard of username on the bus's auth bucket.
// The key is a hash, so the username is not stored either.
func (b *Bus) NewLoginGuard(username string) *LoginGuard {
	return &LoginGuard{kv: b.Auth, key: LoginGuardKey(username)}
}

// LoginGuardKey is the KV key of a username's count.
func LoginGuardKey(username string) string {
	sum := sha256.Sum256([]byte(username))
	return "login." + hex.EncodeToString(sum[:12])
}

// maxCASTries bounds the retries of a contended update.
const maxCASTries = 20

// Reserve counts one more attempt unless limit are already counted.
func (g *LoginGuard) Reserve(ctx context.Context, limit int) (int, bool, error) {
	var (
		n  int
		ok bool
	)
	err := g.update(ctx, func(c *loginCount) bool {
		// Called again after a lost race: decide afresh each time.
		n, ok = c.Failures, false
		if c.Failures >= limit {
			return false
		}
		c.Failures++
		n, ok = c.Failures, true
		return true
	})
	return n, ok, err
}

// Release takes back one reserved attempt that was never judged.
func (g *LoginGuard) Release(ctx context.Context) error {
	return g.update(ctx, func(c *loginCount) bool {
		if c.Failures == 0 {
			return false
		}
		c.Failures--
		return true
	})
}

// Reset clears the count: a login succeeded, or an operator fixed the
// credentials (tsfallback login reset).
func (g *LoginGuard) Reset(ctx context.Context) error {
	if err := g.kv.Delete(ctx, g.key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("clearing the login count: %w", err)
	}
	return nil
}

// Failures returns the count, for status displays.
func (g *LoginGuard) Failures(ctx context.Context) (int, error) {
	c, _, err := g.get(ctx)
	return c.Failures, err
}

func (g *LoginGuard) get(ctx context.Context) (loginCount, uint64, error) {
	var c loginCount
	e, err := g.kv.Get(ctx, g.key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted):
		return c, 0, nil
	case err != nil:
		return c, 0, fmt.Errorf("reading the login count: %w", err)
	}
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		// An unreadable count is taken as the worst case.
		c.Failures = 1 << 20
	}
	return c, e.Revision(), nil
}

// update applies change under optimistic concurrency; change returns false
// to leave the count as it is.
func (g *LoginGuard) update(ctx context.Context, change func(*loginCount) bool) error {
	for range maxCASTries {
		c, rev, err := g.get(ctx)
		if err != nil {
			return err
		}
		if !change(&c) {
			return nil
		}
		c.UpdatedAt = time.Now().UTC()
		data, _ := json.Marshal(c)
		if rev == 0 {
			_, err = g.kv.Create(ctx, g.key, data)
		} else {
			_, err = g.kv.Update(ctx, g.key, data, rev)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongSequence(err) {
			return fmt.Errorf("updating the login count: %w", err)
		}
	}
	return fmt.Errorf("updating the login count: still contended after %d tries", maxCASTries)
}

func isWrongSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}
