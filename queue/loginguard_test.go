package queue_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue/queuetest"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/thingspace/sim"
)

func TestLoginGuardCounts(t *testing.T) {
	b := queuetest.Bus(t)
	ctx := context.Background()
	g := b.NewLoginGuard("someone")
	var wg sync.WaitGroup
	granted := make(chan int, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n, ok, err := g.Reserve(ctx, 3); err != nil {
				t.Error(err)
			} else if ok {
				granted <- n
			}
		}()
	}
	wg.Wait()
	close(granted)
	if len(granted) != 3 {
		t.Fatalf("%d of 10 concurrent reservations granted, want 3", len(granted))
	}
	if err := g.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := g.Failures(ctx); n != 2 {
		t.Fatalf("after a release: %d, want 2", n)
	}
	if err := g.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if n, ok, err := g.Reserve(ctx, 3); err != nil || !ok || n != 1 {
		t.Fatalf("after a reset: %d %v %v", n, ok, err)
	}
	if other, _ := b.NewLoginGuard("someone-else").Failures(ctx); other != 0 {
		t.Fatalf("another username shares the count: %d", other)
	}
}

// TestLoginGuardAcrossProcesses is the lockout a per-process cap cannot
// prevent: two clients (two processes, or one restarted) with a wrong
// password together stay below ThingSpace's lockout of five.
func TestLoginGuardAcrossProcesses(t *testing.T) {
	b := queuetest.Bus(t)
	s, err := sim.New(sim.DefaultConfig(), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	base, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cfg := thingspace.Config{BaseURL: base, ClientID: sim.DefaultClientID,
		ClientSecret: config.Secret(sim.DefaultClientSecret), Username: sim.DefaultUsername,
		Password: "wrong-password", LoginBackoff: 1}.Defaulted()
	req := model.SetFallbackRequest{AccountName: "0000123456-00001",
		Devices: []model.Device{{DeviceIDs: []model.DeviceID{{Kind: model.KindIMEI, ID: "490154203237518"}}}}}
	for range 3 { // three process lifetimes
		c, err := thingspace.New(cfg, zap.NewNop(), thingspace.WithLoginGuard(b.NewLoginGuard(cfg.Username)))
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.SetFallbackAttribute(context.Background(), req)
		if !errors.Is(err, thingspace.ErrLoginStopped) {
			t.Fatalf("got %v, want ErrLoginStopped", err)
		}
	}
	st := s.Stats()
	if st.LoginFailures != 3 || s.Locked() {
		t.Fatalf("%d rejected logins (locked %v), want 3 in all", st.LoginFailures, s.Locked())
	}

	// Fixed credentials and a reset: the next login goes through.
	if err := b.NewLoginGuard(cfg.Username).Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.Password = sim.DefaultPassword
	c, err := thingspace.New(cfg, zap.NewNop(), thingspace.WithLoginGuard(b.NewLoginGuard(cfg.Username)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetFallbackAttribute(context.Background(), req); err != nil {
		t.Fatalf("after reset: %v", err)
	}
	if n, _ := b.NewLoginGuard(cfg.Username).Failures(context.Background()); n != 0 {
		t.Fatalf("count after a good login: %d", n)
	}
}
