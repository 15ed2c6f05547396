package thingspace_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/thingspace"
	"github.com/tsfallback/tsfallback/thingspace/sim"
	"github.com/tsfallback/tsfallback/thingspace/sim/simtest"
)

const testAccount = "0000123456-00001"

// startSim runs a simulator on 127.0.0.1:0, closed with the test.
func startSim(t testing.TB, cfg sim.Config) (*sim.Sim, string) {
	t.Helper()
	s, err := sim.New(cfg, nil)
	if err != nil {
		t.Fatalf("sim.New: %v", err)
	}
	base, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatalf("sim.Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, base
}

func clientConfig(base string) thingspace.Config {
	return thingspace.Config{
		BaseURL:        base,
		ClientID:       sim.DefaultClientID,
		ClientSecret:   sim.DefaultClientSecret,
		Username:       sim.DefaultUsername,
		Password:       sim.DefaultPassword,
		RequestTimeout: 5 * time.Second,
		LoginBackoff:   time.Millisecond,
	}
}

func newClient(t testing.TB, cfg thingspace.Config) *thingspace.Client {
	t.Helper()
	c, err := thingspace.New(cfg, nil)
	if err != nil {
		t.Fatalf("thingspace.New: %v", err)
	}
	return c
}

func devices(seed uint64, n int) []model.Device {
	r := rand.New(rand.NewPCG(seed, 7))
	ds := make([]model.Device, n)
	for i := range ds {
		ds[i] = model.RandomDevice(r)
	}
	return ds
}

func idle(t testing.TB, s *sim.Sim) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Idle(ctx); err != nil {
		t.Fatalf("sim.Idle: %v", err)
	}
}

func register(t testing.TB, c *thingspace.Client, l *simtest.Listener) {
	t.Helper()
	err := c.RegisterCallback(context.Background(), testAccount, thingspace.Registration{
		Name: thingspace.ServiceDeviceProfile, URL: l.URL + "/callbacks/thingspace",
		Username: "cb-user", Password: "cb-pass",
	})
	if err != nil {
		t.Fatalf("RegisterCallback: %v", err)
	}
}
