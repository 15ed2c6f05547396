package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

func TestPublishToJetStream(t *testing.T) {
	bus := queuetest.Bus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	im, err := New(bus.NC, Config{MaxPending: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sample bytes.Buffer
	if err := WriteSample(&sample, 2500, 1); err != nil {
		t.Fatal(err)
	}
	run := func(runID string) Result {
		t.Helper()
		res, err := im.Run(ctx, Options{Files: []string{StdinName}, Account: acct, RunID: runID},
			bytes.NewReader(sample.Bytes()), nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return res
	}

	res := run("it")
	if res.Jobs != 3 || res.Devices != 2500 || res.JobsAlreadyPublished != 0 ||
		ExitCode(res, nil) != 0 {
		t.Fatalf("first run: %+v", res)
	}
	stream, err := bus.JS.Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	checkMsgs(t, ctx, stream, 3)
	for seq, want := range []int{1000, 1000, 500} {
		m, err := stream.GetMsg(ctx, uint64(seq+1))
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("it-%d", seq+1)
		if m.Subject != queue.JobSubject(acct) || m.Header.Get(jetstream.MsgIDHeader) != id {
			t.Errorf("message %d: subject %s, msg id %q, want %s", seq+1, m.Subject,
				m.Header.Get(jetstream.MsgIDHeader), id)
		}
		job, err := model.DecodeJob(m.Data, model.DefaultMaxJobDevices)
		if err != nil || job.JobID != id || job.AccountName != acct || len(job.Devices) != want {
			t.Errorf("message %d: job %s account %s with %d devices, err %v", seq+1, job.JobID,
				job.AccountName, len(job.Devices), err)
		}
	}

	// The same run id again: the stream's duplicate window drops them all.
	res = run("it")
	if res.Jobs != 3 || res.JobsAlreadyPublished != 3 {
		t.Errorf("re-run: %+v", res)
	}
	checkMsgs(t, ctx, stream, 3)

	res = run("other")
	if res.JobsAlreadyPublished != 0 {
		t.Errorf("new run id: %+v", res)
	}
	checkMsgs(t, ctx, stream, 6)
}

func checkMsgs(t *testing.T, ctx context.Context, s jetstream.Stream, want uint64) {
	t.Helper()
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != want {
		t.Fatalf("stream holds %d messages, want %d", info.State.Msgs, want)
	}
}

// TestPublishFailureNamesJob publishes to a server without the jobs stream:
// the ack fails and the error names the job and the run id.
func TestPublishFailureNamesJob(t *testing.T) {
	nc, err := nats.Connect(queuetest.Server(t))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	im, err := New(nc, Config{AckTimeout: 5 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := im.Run(ctx, Options{Files: []string{StdinName}, Account: acct, RunID: "lost"},
		bytes.NewReader([]byte("iccid\n"+iccids[0]+"\n")), nil)
	if !errors.Is(err, ErrPublish) || !bytes.Contains([]byte(err.Error()), []byte("job lost-1")) ||
		!bytes.Contains([]byte(err.Error()), []byte("run id lost")) {
		t.Fatalf("err = %v", err)
	}
	if res.Jobs != 0 || ExitCode(res, err) != ExitFatal {
		t.Errorf("result %+v", res)
	}
}

// BenchmarkImport measures rows/s, dry (parsing and checks only) and
// against an embedded server.
func BenchmarkImport(b *testing.B) {
	var sample bytes.Buffer
	if err := WriteSample(&sample, 20000, 3); err != nil {
		b.Fatal(err)
	}
	for _, dry := range []bool{true, false} {
		b.Run(map[bool]string{true: "dry", false: "jetstream"}[dry], func(b *testing.B) {
			var nc *nats.Conn
			if !dry {
				nc = queuetest.Bus(b).NC
			}
			im, err := New(nc, Config{}, nil)
			if err != nil {
				b.Fatal(err)
			}
			rows, n := 0, 0
			start := time.Now()
			for b.Loop() {
				n++
				res, err := im.Run(context.Background(), Options{Files: []string{StdinName},
					Account: acct, DryRun: dry, RunID: fmt.Sprintf("bench-%d", n)},
					bytes.NewReader(sample.Bytes()), nil)
				if err != nil {
					b.Fatal(err)
				}
				rows += res.Rows
			}
			b.ReportMetric(float64(rows)/time.Since(start).Seconds(), "rows/s")
		})
	}
}

// TestFailedRunCountsWhatWasPublished: a run that stops half way (here its
// duplicate check cannot spill) still takes the acks of the jobs it sent,
// so its result counts every job in the stream, and only jobs whose ack
// really is missing as unconfirmed.
func TestFailedRunCountsWhatWasPublished(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	bus := queuetest.Bus(t)
	im, err := New(bus.NC, Config{DedupMemoryMB: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sample bytes.Buffer
	if err := WriteSample(&sample, 40000, 5); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := im.Run(ctx, Options{Files: []string{StdinName}, Account: acct, RunID: "half"},
		bytes.NewReader(sample.Bytes()), nil)
	if err == nil || !strings.Contains(err.Error(), "spill file") {
		t.Fatalf("err = %v, want the spill failure", err)
	}
	stored := queuetest.Count(t, bus, queue.StreamJobs)
	if res.Jobs == 0 || uint64(res.Jobs) > stored || stored > uint64(res.Jobs+res.JobsUnconfirmed) {
		t.Errorf("stream holds %d jobs; result: %d published, %d unconfirmed", stored, res.Jobs,
			res.JobsUnconfirmed)
	}
	// Every row is accounted for, the job still filling up included.
	if res.DevicesNotSent == 0 || res.Rows != res.Devices+res.DevicesUnconfirmed+res.DevicesNotSent+
		res.Rejected+res.Duplicates {
		t.Errorf("rows do not add up: %+v", res)
	}
}
