package results

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

// Defaults of the reader.
const (
	// DefaultIdleWait is how long one fetch of a Follow read waits for
	// more events before it asks again. A read without Follow does not
	// wait: it ends with the last stored event.
	DefaultIdleWait = 500 * time.Millisecond
	fetchBatch      = 256
	flushTimeout    = 5 * time.Second
	maxResets       = 10
	maxEmptyTries   = 20
	emptyRetryWait  = 10 * time.Millisecond
)

// Options select the events to read.
type Options struct {
	// Account and JobID narrow the subject; empty means every one.
	Account string
	JobID   string
	// Types keeps only these event types; empty keeps all.
	Types []string
	// Follow keeps waiting for new events until ctx ends. Without it, the
	// read ends once every stored event has been delivered.
	Follow bool
	// OnlyNew starts at the end of the stream instead of its start.
	OnlyNew bool
	// Durable names a durable consumer: a later read with the same name
	// goes on after the last event acknowledged. Empty uses an ordered,
	// ephemeral consumer.
	Durable string
	// IdleWait overrides DefaultIdleWait.
	IdleWait time.Duration
}

// Subject is the filter subject of the options.
func (o Options) Subject() string {
	acct, job := o.Account, o.JobID
	if acct == "" {
		acct = "*"
	}
	if job == "" {
		job = "*"
	}
	return queue.ResultSubject(acct, job)
}

// Validate checks the filters, so that a typo is an error, not an empty read.
func (o Options) Validate() error {
	if o.Account != "" {
		if err := model.ValidateAccountName(o.Account); err != nil {
			return fmt.Errorf("--account: %s", strings.TrimPrefix(err.Error(), "model: "))
		}
	}
	if o.JobID != "" && o.JobID != model.UnknownJobID {
		if err := model.ValidateJobID(o.JobID); err != nil {
			return fmt.Errorf("--job: %s", strings.TrimPrefix(err.Error(), "model: "))
		}
	}
	if o.Durable != "" {
		if err := model.ValidateJobID(o.Durable); err != nil {
			return fmt.Errorf("--durable: %q: want 1 to %d of [A-Za-z0-9_-]", o.Durable, model.MaxJobIDLen)
		}
	}
	return nil
}

// Handler receives each event and its raw JSON. An event that is not valid
// JSON (another publisher wrote to the subject) still reaches it, as a zero
// Event with its raw bytes, so that nothing is hidden. Returning an error stops
// the read with that error; with a durable consumer the event is then not
// acknowledged and comes again next time.
type Handler func(e model.Event, raw []byte) error

// Read delivers the selected events to fn in stream order.
func Read(ctx context.Context, js jetstream.JetStream, o Options, fn Handler) error {
	if err := o.Validate(); err != nil {
		return err
	}
	cons, err := consumer(ctx, js, o)
	if err != nil {
		return err
	}
	wait := o.IdleWait
	if wait <= 0 {
		wait = DefaultIdleWait
	}
	if o.Durable != "" {
		// Acks are sent without waiting; a flush before returning makes
		// sure the server has them, so that the next read with the same
		// name does not see these events again.
		defer func() { _ = js.Conn().FlushTimeout(flushTimeout) }()
	}
	if !o.Follow && nothingPending(cons) {
		return nil
	}
	emptyTries := 0
	for {
		// The fetch ends at the idle wait or as soon as ctx ends, so that
		// an interrupted --follow stops at once.
		fctx, cancel := context.WithTimeout(ctx, wait)
		var batch jetstream.MessageBatch
		if o.Follow {
			batch, err = cons.Fetch(fetchBatch, jetstream.FetchContext(fctx))
		} else {
			// A fetch that waits would hold a short batch until the
			// idle wait ends; this one returns what is stored.
			batch, err = cons.FetchNoWait(fetchBatch)
		}
		if err != nil {
			expired := fctx.Err() != nil
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			if expired {
				// The idle wait ran out before the fetch was even sent
				// (a loaded machine): an empty fetch, not an error.
				continue
			}
			return fmt.Errorf("fetching events: %w", err)
		}
		n, pending, err := deliver(batch, o, fn)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		// Without Follow the read ends with the last stored event rather
		// than after one more idle wait. A no-wait fetch can come back
		// empty while the server still counts events for the consumer
		// (seen with a durable resumed just after a publish); the count
		// decides, a few times over, before the read ends.
		if !o.Follow && n == 0 && emptyTries < maxEmptyTries {
			if info, err := cons.Info(ctx); err == nil && info.NumPending > 0 {
				emptyTries++
				time.Sleep(emptyRetryWait)
				continue
			}
		}
		if !o.Follow && pending == 0 {
			return nil
		}
	}
}

// nothingPending reports whether the new consumer has nothing to deliver,
// so that a read of an empty selection ends at once.
func nothingPending(c jetstream.Consumer) bool {
	info := c.CachedInfo()
	return info != nil && info.NumPending == 0 && info.NumAckPending == 0
}

func deliver(batch jetstream.MessageBatch, o Options, fn Handler) (n int, pending uint64, err error) {
	for msg := range batch.Messages() {
		n++
		if md, err := msg.Metadata(); err == nil {
			pending = md.NumPending
		}
		var e model.Event
		if json.Unmarshal(msg.Data(), &e) != nil {
			e = model.Event{}
		}
		if len(o.Types) == 0 || slices.Contains(o.Types, e.Type) {
			if err := fn(e, msg.Data()); err != nil {
				return n, pending, err
			}
		}
		if o.Durable != "" {
			if err := msg.Ack(); err != nil {
				return n, pending, fmt.Errorf("acknowledging event: %w", err)
			}
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) &&
		!errors.Is(err, context.DeadlineExceeded) {
		return n, pending, fmt.Errorf("reading events: %w", err)
	}
	if n == 0 {
		pending = 0
	}
	return n, pending, nil
}

func consumer(ctx context.Context, js jetstream.JetStream, o Options) (jetstream.Consumer, error) {
	deliver := jetstream.DeliverAllPolicy
	if o.OnlyNew {
		deliver = jetstream.DeliverNewPolicy
	}
	if o.Durable == "" {
		c, err := js.OrderedConsumer(ctx, queue.StreamResults, jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{o.Subject()},
			DeliverPolicy:  deliver,
			// The client re-creates an ordered consumer that a server
			// lost, by default for ever and deaf to ctx; bounded, a
			// failed-over cluster that cannot place it yet is an error
			// the caller sees.
			MaxResetAttempts: maxResets,
		})
		if err != nil {
			return nil, fmt.Errorf("opening a reader on %s: %w", queue.StreamResults, err)
		}
		return c, nil
	}
	// An existing durable resumes as it is: changing its filter would skip
	// the new filter's events before its position, and its start cannot be
	// changed at all, so a different filter is refused and --new only
	// matters when the durable is first made.
	if c, err := js.Consumer(ctx, queue.StreamResults, o.Durable); err == nil {
		if got := c.CachedInfo().Config.FilterSubject; got != o.Subject() {
			return nil, fmt.Errorf("durable reader %q reads %s, not %s: use the filters it was made with, "+
				"or another name", o.Durable, got, o.Subject())
		}
		return c, nil
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("opening durable reader %q: %w", o.Durable, err)
	}
	c, err := js.CreateConsumer(ctx, queue.StreamResults, jetstream.ConsumerConfig{
		Durable:       o.Durable,
		Description:   "tsfallback results reader",
		FilterSubject: o.Subject(),
		DeliverPolicy: deliver,
		AckPolicy:     jetstream.AckExplicitPolicy,
		// A reader that stops for a week is forgotten rather than kept.
		InactiveThreshold: 7 * 24 * time.Hour,
	})
	if err != nil {
		return nil, fmt.Errorf("opening durable reader %q: %w", o.Durable, err)
	}
	return c, nil
}
