package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

// ErrPublish is matched by every failed job publish.
var ErrPublish = errors.New("importer: publishing failed")

// sent is a job publish waiting for its ack.
type sent struct {
	jobID   string
	devices int
	ack     jetstream.PubAckFuture
	// before: an earlier run with the run id published the job (the
	// manifest says so), so it is not new even when the stream takes it as
	// new (after its duplicate window; the workers' journal skips it then).
	before bool
	body   []byte // for the manifest's mark once the ack is in
}

// publisher publishes jobs asynchronously and checks every ack in order.
// It keeps at most max publishes in flight itself, rather than relying on
// the client's limit, whose stall turns into an error after a short wait.
type publisher struct {
	js         jetstream.JetStream
	maxPayload int64
	max        int
	inflight   []sent
	res        *Result
	dryRun     bool
	onJob      func(model.Job)
	// runs is the manifest of published jobs (queue.BucketRuns); a dry
	// run only reads it. nil without NATS.
	runs jetstream.KeyValue
	log  *zap.Logger
	// marks feeds the goroutine that writes the manifest's marks; marked
	// is closed when it is done.
	marks  chan sent
	marked chan struct{}
}

// ErrRunReused is matched when a run id is used again for other input.
var ErrRunReused = errors.New("importer: run id used before for other devices")

// checkManifest records the job's content under its id before the job is
// published, and refuses a job id that was published before with other
// content: the stream (inside its duplicate window) or the workers'
// journal (after it) would keep the old devices and silently drop the new
// ones. A re-run of the same input and job size finds the same digest.
func (p *publisher) checkManifest(ctx context.Context, jobID string, body []byte) (bool, error) {
	if p.runs == nil {
		return false, nil
	}
	before, err := queue.RecordJob(ctx, p.runs, jobID, body)
	switch {
	case errors.Is(err, queue.ErrJobIDReused):
		return false, fmt.Errorf("%w: job %s was published before with other devices (the input or --job-size "+
			"changed since the first run with this run id); nothing of it was published now: "+
			"use a new --run-id for changed input", ErrRunReused, jobID)
	case err != nil:
		return false, fmt.Errorf("%w: %w", ErrPublish, err)
	}
	return before, nil
}

func (p *publisher) publish(ctx context.Context, job model.Job) error {
	if p.dryRun {
		return p.publishDry(ctx, job)
	}
	data, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("%w: encoding job %s: %w", ErrPublish, job.JobID, err)
	}
	if p.maxPayload > 0 && int64(len(data)) > p.maxPayload {
		return fmt.Errorf("%w: job %s is %d bytes, over the server's limit of %d; "+
			"use a smaller job size", ErrPublish, job.JobID, len(data), p.maxPayload)
	}
	before, err := p.checkManifest(ctx, job.JobID, data)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(queue.JobSubject(job.AccountName))
	msg.Data = data
	msg.Header.Set(jetstream.MsgIDHeader, job.JobID)

	for len(p.inflight) >= p.max {
		if err := p.waitOldest(ctx); err != nil {
			return err
		}
	}
	f, err := p.js.PublishMsgAsync(msg)
	if err != nil {
		return fmt.Errorf("%w: job %s: %w", ErrPublish, job.JobID, err)
	}
	p.inflight = append(p.inflight, sent{jobID: job.JobID, devices: len(job.Devices), ack: f,
		before: before, body: data})
	return p.reap(ctx)
}

// publishDry counts the job as a real run would, and with a manifest tells
// whether a real run would find it published before or stop on it.
func (p *publisher) publishDry(ctx context.Context, job model.Job) error {
	if p.onJob != nil {
		p.onJob(job)
	}
	before := false
	if p.runs != nil {
		data, err := json.Marshal(job)
		if err != nil {
			return fmt.Errorf("%w: encoding job %s: %w", ErrPublish, job.JobID, err)
		}
		before, err = queue.CheckJob(ctx, p.runs, job.JobID, data)
		switch {
		case errors.Is(err, queue.ErrJobIDReused):
			return fmt.Errorf("%w: job %s was published before with other devices (the input or "+
				"--job-size changed since the first run with this run id); a real run would stop "+
				"here: use a new --run-id for changed input", ErrRunReused, job.JobID)
		case err != nil:
			return fmt.Errorf("%w: %w", ErrPublish, err)
		}
	}
	p.acked(job.JobID, len(job.Devices), before)
	return nil
}

// settle runs after a fatal error: it takes the acks that arrive within
// d, and counts the jobs without one (their ack failed or did not come) as
// unconfirmed.
func (p *publisher) settle(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for len(p.inflight) > 0 {
		s := p.inflight[0]
		select {
		case a := <-s.ack.Ok():
			p.pop(ctx, s, a)
			continue
		case <-s.ack.Err():
			p.failed(s)
			continue
		case <-timer.C:
			for _, s := range p.inflight {
				p.res.JobsUnconfirmed++
				p.res.DevicesUnconfirmed += s.devices
			}
			p.inflight = nil
			return
		}
	}
}

// reap takes the acks that have already arrived, oldest first, without
// waiting.
func (p *publisher) reap(ctx context.Context) error {
	for len(p.inflight) > 0 {
		s := p.inflight[0]
		select {
		case a := <-s.ack.Ok():
			p.pop(ctx, s, a)
		case err := <-s.ack.Err():
			p.failed(s)
			return fmt.Errorf("%w: job %s: %w", ErrPublish, s.jobID, err)
		default:
			return nil
		}
	}
	return nil
}

// waitOldest waits for the oldest ack. The client's ack timeout bounds the
// wait, so a lost ack surfaces as an error.
func (p *publisher) waitOldest(ctx context.Context) error {
	s := p.inflight[0]
	select {
	case a := <-s.ack.Ok():
		p.pop(ctx, s, a)
		return nil
	case err := <-s.ack.Err():
		p.failed(s)
		return fmt.Errorf("%w: job %s: %w", ErrPublish, s.jobID, err)
	case <-ctx.Done():
		return fmt.Errorf("%w: waiting for the ack of job %s: %w", ErrPublish, s.jobID, ctx.Err())
	}
}

// drain waits for every ack.
func (p *publisher) drain(ctx context.Context) error {
	for len(p.inflight) > 0 {
		if err := p.waitOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

// mark records in the manifest, off the publishing path, that s's publish
// was acknowledged. Best effort: a mark that fails only makes a later
// re-run count the job as new (the stream or the journal still drop it).
func (p *publisher) mark(ctx context.Context, s sent) {
	if p.marks == nil {
		p.marks = make(chan sent, p.max)
		p.marked = make(chan struct{})
		mctx := context.WithoutCancel(ctx)
		go func() {
			defer close(p.marked)
			for s := range p.marks {
				actx, cancel := context.WithTimeout(mctx, markTimeout)
				if err := queue.AckJob(actx, p.runs, s.jobID, s.body); err != nil {
					p.log.Warn("import_manifest_ack_failed", zap.String("job_id", s.jobID), zap.Error(err))
				}
				cancel()
			}
		}()
	}
	p.marks <- s
}

// markTimeout bounds one manifest mark.
const markTimeout = 10 * time.Second

// close waits for the manifest marks to be written.
func (p *publisher) close() {
	if p.marks != nil {
		close(p.marks)
		<-p.marked
		p.marks = nil
	}
}

// failed takes the oldest publish, whose ack failed, as unconfirmed: the
// error may have come after the stream stored it.
func (p *publisher) failed(s sent) {
	p.inflight[0] = sent{}
	p.inflight = p.inflight[1:]
	p.res.JobsUnconfirmed++
	p.res.DevicesUnconfirmed += s.devices
}

func (p *publisher) pop(ctx context.Context, s sent, a *jetstream.PubAck) {
	p.inflight[0] = sent{}
	p.inflight = p.inflight[1:]
	if p.runs != nil {
		p.mark(ctx, s)
	}
	p.acked(s.jobID, s.devices, a.Duplicate || s.before)
}

func (p *publisher) acked(jobID string, devices int, dup bool) {
	p.res.Jobs++
	p.res.Devices += devices
	if dup {
		p.res.JobsAlreadyPublished++
	}
	if p.res.FirstJobID == "" {
		p.res.FirstJobID = jobID
	}
	p.res.LastJobID = jobID
}

// batcher groups devices per account into jobs of at most size devices,
// numbered in the order they fill up.
type batcher struct {
	runID   string
	replyTo string
	size    int
	n       int
	order   []string // accounts in order of first appearance
	pending map[string][]model.Device
	pub     *publisher
}

func (b *batcher) add(ctx context.Context, account string, d model.Device) error {
	devs, ok := b.pending[account]
	if !ok {
		b.order = append(b.order, account)
		devs = make([]model.Device, 0, b.size)
	}
	devs = append(devs, d)
	if len(devs) < b.size {
		b.pending[account] = devs
		return nil
	}
	// The job is encoded before publish returns, so the slice is reused.
	b.pending[account] = devs[:0]
	return b.flushJob(ctx, account, devs)
}

// flush publishes the partial jobs, accounts in order of first
// appearance so that job numbers do not depend on map order.
func (b *batcher) flush(ctx context.Context) error {
	for _, a := range b.order {
		if devs := b.pending[a]; len(devs) > 0 {
			b.pending[a] = nil
			if err := b.flushJob(ctx, a, devs); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *batcher) flushJob(ctx context.Context, account string, devs []model.Device) error {
	b.n++
	job := model.Job{
		JobID:       fmt.Sprintf("%s-%d", b.runID, b.n),
		AccountName: account,
		Devices:     devs,
		ReplyTo:     b.replyTo,
	}
	return b.pub.publish(ctx, job)
}
