package callback

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

// benchConcurrency is how many clients post at once in the benchmarks:
// about what ThingSpace's fan-out of a few requests' callbacks looks like.
const benchConcurrency = 16

// defaultBenchRate paces BenchmarkCallbackLatency (TSFB_BENCH_RATE
// overrides it): below the pipeline's capacity, so the latency is that of a
// callback, not of a growing queue.
const defaultBenchRate = 1000

// listenTB serves h on a loopback port until the benchmark ends.
func listenTB(tb testing.TB, serve func(context.Context, net.Listener) error) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// benchBodies returns n distinct callbacks of requests of 100 devices, and
// the devices.
func benchBodies(n int) ([][]byte, []model.Device) {
	devs := devices(uint64(n), n)
	bodies := make([][]byte, n)
	for i := range devs {
		bodies[i] = callbackBody(benchRequestID(i), devs[i], model.StatusSuccess)
	}
	return bodies, devs
}

func benchRequestID(i int) string { return fmt.Sprintf("bench-req-%d", i/100) }

// drive posts every body with benchConcurrency clients. When rate is above
// zero body i is sent no earlier than start+i/rate; sent[i] receives the
// time it was sent.
func drive(b *testing.B, url string, bodies [][]byte, rate int, sent []time.Time) {
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: benchConcurrency, MaxConnsPerHost: benchConcurrency,
	}}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchConcurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					return
				}
				if rate > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
				}
				if sent != nil {
					sent[i] = time.Now()
				}
				resp, err := client.Post(url+CallbackPath, "application/json", bytes.NewReader(bodies[i]))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("callback %d: status %d", i, resp.StatusCode)
					return
				}
			}
		})
	}
	wg.Wait()
}

func benchIngester(b *testing.B, bus *queue.Bus) string {
	in, err := NewIngester(testConfig(), bus, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	return listenTB(b, in.Serve)
}

// BenchmarkIngest measures callbacks persisted per second through the real
// ingester (HTTP, authentication, JetStream publish and ack) into an
// embedded JetStream server with a file store.
func BenchmarkIngest(b *testing.B) {
	bus := queuetest.Bus(b)
	url := benchIngester(b, bus)
	bodies, _ := benchBodies(b.N)
	b.ResetTimer()
	drive(b, url, bodies, 0, nil)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "callbacks/s")
	if got := streamMsgs(b, bus, queue.StreamCallbacks); got != b.N {
		b.Fatalf("%d callbacks stored, want %d", got, b.N)
	}
}

// BenchmarkBareHTTP is the yardstick for BenchmarkIngest: a net/http
// server on the same machine that reads the body and answers 200, driven
// by the same clients with the same bodies.
func BenchmarkBareHTTP(b *testing.B) {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.WriteHeader(http.StatusOK)
		}),
		ReadHeaderTimeout: DefaultReadHeaderTimeout,
	}
	url := listenTB(b, func(ctx context.Context, ln net.Listener) error {
		go func() { <-ctx.Done(); _ = srv.Close() }()
		if err := srv.Serve(ln); err != http.ErrServerClosed {
			return err
		}
		return nil
	})
	bodies, _ := benchBodies(b.N)
	b.ResetTimer()
	drive(b, url, bodies, 0, nil)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
}

// BenchmarkCallbackLatency measures the time from a callback's POST to its
// device.succeeded event in FALLBACK_RESULTS, through the ingester, the
// correlator and the progress tracker, at a steady TSFB_BENCH_RATE.
func BenchmarkCallbackLatency(b *testing.B) {
	rate := defaultBenchRate
	if s := os.Getenv("TSFB_BENCH_RATE"); s != "" {
		var err error
		if rate, err = strconv.Atoi(s); err != nil || rate < 1 {
			b.Fatalf("TSFB_BENCH_RATE: %q, want a positive number", s)
		}
	}
	bus := queuetest.Bus(b)
	tr, err := progress.New(bus, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewCorrelator(testConfig(), bus, tr, zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	url := benchIngester(b, bus)

	// Jobs of 1,000 devices in requests of 100, as the worker makes them.
	bodies, devs := benchBodies(b.N)
	index := make(map[string]int, len(devs))
	for i := 0; i < len(devs); i += 1000 {
		end := min(i+1000, len(devs))
		job := model.Job{JobID: fmt.Sprintf("bench-job-%d", i), AccountName: testAccount, Devices: devs[i:end]}
		if err := tr.StartJob(ctx, job); err != nil {
			b.Fatal(err)
		}
		for r := i; r < end; r += 100 {
			rec := model.RequestRecord{RequestID: benchRequestID(r), JobID: job.JobID,
				AccountName: testAccount, Devices: devs[r:min(r+100, end)], SubmittedAt: time.Now().Unix()}
			data, _ := json.Marshal(rec)
			if _, err := bus.Requests.Put(ctx, rec.RequestID, data); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := range devs {
		index[devs[i].Key()] = i
	}

	// A core subscription sees each event as JetStream stores it.
	arrived := make([]time.Time, b.N)
	var got atomic.Int64
	all := make(chan struct{})
	sub, err := bus.NC.Subscribe(queue.ResultsPrefix+".>", func(m *nats.Msg) {
		now := time.Now()
		var e model.Event
		if json.Unmarshal(m.Data, &e) != nil || e.Type != model.EventDeviceSucceeded || e.Device == nil {
			return
		}
		if i, ok := index[e.Device.Key()]; ok && arrived[i].IsZero() {
			arrived[i] = now
			if got.Add(1) == int64(b.N) {
				close(all)
			}
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := bus.NC.Flush(); err != nil {
		b.Fatal(err)
	}

	sent := make([]time.Time, b.N)
	b.ResetTimer()
	drive(b, url, bodies, rate, sent)
	select {
	case <-all:
	case <-time.After(60 * time.Second):
		b.Fatalf("%d of %d events after 60s", got.Load(), b.N)
	}
	b.StopTimer()
	_ = sub.Unsubscribe() // arrived is read below; no more writes to it

	lat := make([]float64, b.N)
	for i := range lat {
		lat[i] = float64(arrived[i].Sub(sent[i])) / float64(time.Millisecond)
	}
	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[min(len(lat)-1, len(lat)*99/100)], "p99-ms")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
