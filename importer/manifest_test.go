package importer

import (
	"bytes"
	"context"
	"errors"
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
	run := func(jobSize int) (Result, error) {
		return im.Run(ctx, Options{Files: []string{StdinName}, Account: acct, RunID: "reuse",
			JobSize: jobSize}, bytes.NewReader(sample.Bytes()), nil)
	}
	if _, err := run(1000); err != nil {
		t.Fatal(err)
	}
	if res, err := run(1000); err != nil || res.JobsAlreadyPublished != 2 {
		t.Fatalf("same input again: %+v, %v", res, err)
	}
	_, err = run(500)
	if !errors.Is(err, ErrRunReused) {
		t.Fatalf("other job size: got %v, want ErrRunReused", err)
	}
	stream, err := bus.JS.Stream(ctx, queue.StreamJobs)
	if err != nil {
		t.Fatal(err)
	}
	checkMsgs(t, ctx, stream, 2)
}
