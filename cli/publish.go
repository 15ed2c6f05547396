package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

func runPublish(ctx context.Context, env Env, args []string) error {
	fs := newFlags(env, "publish", "[FILE|-]  (jobs may hold TSFB_MAX_JOB_DEVICES devices, as the workers check)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usageErr("one job file at a time (got %d)", len(pos))
	}
	var in io.Reader = env.Stdin
	name := "standard input"
	if len(pos) == 1 && pos[0] != "-" {
		f, err := os.Open(pos[0])
		if err != nil {
			return usageErr("%v", err)
		}
		defer f.Close()
		in, name = f, pos[0]
	}
	data, err := io.ReadAll(io.LimitReader(in, 64<<20))
	if err != nil {
		return usageErr("reading %s: %v", name, err)
	}
	s, err := loadSettings(ctx, env)
	if err != nil {
		return usageErr("%v", err)
	}
	job, err := model.DecodeJob(data, s.Worker.MaxJobDevices)
	if err != nil {
		return usageErr("%s: %v", name, err)
	}
	if job.JobID == "" {
		job.JobID = uuid.NewString()
	}
	bus, err := queue.Open(ctx, s.Queue, "tsfallback-publish", zap.NewNop())
	if err != nil {
		return err
	}
	defer bus.Close()
	body, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("encoding job: %w", err)
	}
	if _, err := queue.RecordJob(ctx, bus.Runs, job.JobID, body); errors.Is(err, queue.ErrJobIDReused) {
		return &exitError{code: ExitPartial, err: fmt.Errorf("job id %s was published before with other devices; "+
			"nothing was published: use a new job id", job.JobID)}
	} else if err != nil {
		return err
	}
	ack, err := publishJob(ctx, bus.JS, job.AccountName, job.JobID, body)
	if err != nil {
		return err
	}
	// Best effort: without the mark an import re-run would count the job
	// as new; the stream and the journal drop it either way.
	_ = queue.AckJob(ctx, bus.Runs, job.JobID, body)
	out := map[string]any{"jobId": job.JobID, "accountName": job.AccountName,
		"devices": len(job.Devices), "stream": ack.Stream, "sequence": ack.Sequence, "duplicate": ack.Duplicate}
	return json.NewEncoder(env.Stdout).Encode(out)
}

// publishJob publishes a validated job's body with its id as Nats-Msg-Id.
func publishJob(ctx context.Context, js jetstream.JetStream, account, jobID string, body []byte) (*jetstream.PubAck, error) {
	msg := nats.NewMsg(queue.JobSubject(account))
	msg.Data = body
	msg.Header.Set(jetstream.MsgIDHeader, jobID)
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(pctx, msg)
	if err != nil {
		return nil, fmt.Errorf("publishing job %s: %w", jobID, err)
	}
	return ack, nil
}
