package importer

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/queue"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

// TestRunIDReusedForOtherInput: the same run id with another job size (or
// another file) would publish other devices under job ids the stream and
// the journal already know, and they would be dropped unseen.
func TestRunIDReusedForOtherInput(t *testing.T) {
	bus := queuetest.Bus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	im, err := New(bus.NC, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sample bytes.Buffer
	if err := WriteSample(&sample, 1200, 3); err != nil {
		t.Fatal(err)
	}
	runAs := func(jobSize int, dry bool) (Result, error) {
		return im.Run(ctx, Options{Files: []string{StdinName}, Account: acct, RunID: "reuse",
			JobSize: jobSize, DryRun: dry}, bytes.NewReader(sample.Bytes()), nil)
	}
	run := func(jobSize int) (Result, error) { return runAs(jobSize, false) }
	// A dry run reads the manifest and writes nothing to it: before the
	// first run nothing is published, and the real run that follows it
	// is a first run.
	if res, err := runAs(1000, true); err != nil || res.JobsAlreadyPublished != 0 || res.Jobs != 2 {
		t.Fatalf("dry run before any: %+v, %v", res, err)
	}
	if res, err := run(1000); err != nil || res.JobsAlreadyPublished != 0 {
		t.Fatalf("first run: %+v, %v", res, err)
	}
	// After it, a dry run tells what a real run would find.
	if res, err := runAs(1000, true); err != nil || res.JobsAlreadyPublished != 2 {
		t.Fatalf("dry run of the same input: %+v, %v", res, err)
	}
	if _, err := runAs(500, true); !errors.Is(err, ErrRunReused) ||
		!strings.Contains(err.Error(), "a real run would stop") {
		t.Fatalf("dry run of another job size: got %v, want ErrRunReused", err)
	}
	if res, err := run(1000); err != nil || res.JobsAlreadyPublished != 2 {
		t.Fatalf("same input again: %+v, %v", res, err)
	}
	_, err = run(500)
	if !errors.Is(err, ErrRunReused) || strings.Contains(err.Error(), "re-run with it") {
		t.Fatalf("other job size: got %v, want ErrRunReused", err)
	}
	stream, err := bus.JS.Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	checkMsgs(t, ctx, stream, 2)
}

// TestPublishedBeforeMeansAcked: a run that recorded its jobs but failed
// to publish them (the stream was gone) leaves no job "published before":
// the re-run publishes them as new, and a third run finds them all.
func TestPublishedBeforeMeansAcked(t *testing.T) {
	bus := queuetest.Bus(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	im, err := New(bus.NC, Config{MaxPending: 1, AckTimeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sample bytes.Buffer
	if err := WriteSample(&sample, 30, 9); err != nil {
		t.Fatal(err)
	}
	run := func() (Result, error) {
		return im.Run(ctx, Options{Files: []string{StdinName}, Account: acct, RunID: "acked",
			JobSize: 10}, bytes.NewReader(sample.Bytes()), nil)
	}
	if err := bus.JS.DeleteStream(ctx, queue.StreamJobs); err != nil {
		t.Fatal(err)
	}
	if res, err := run(); err == nil || res.Jobs != 0 {
		t.Fatalf("run without the jobs stream: %+v, %v; want a failure", res, err)
	}
	if err := bus.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := run(); err != nil || res.Jobs != 3 || res.JobsAlreadyPublished != 0 {
		t.Fatalf("re-run: %+v, %v; want 3 jobs, none published before", res, err)
	}
	if res, err := run(); err != nil || res.JobsAlreadyPublished != 3 {
		t.Fatalf("third run: %+v, %v; want all 3 published before", res, err)
	}
	if res, err := im.Run(ctx, Options{Files: []string{StdinName}, Account: acct, RunID: "acked",
		JobSize: 10, DryRun: true}, bytes.NewReader(sample.Bytes()), nil); err != nil ||
		res.JobsAlreadyPublished != 3 {
		t.Fatalf("dry run: %+v, %v; want all 3 published before", res, err)
	}
}
