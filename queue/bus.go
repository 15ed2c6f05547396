package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/config"
	"github.com/tsfallback/tsfallback/model"
)

// Default time-to-live of the records that follow a request, long enough
// for ThingSpace's last resend and for an operator to look a job up.
const DefaultRecordTTL = 72 * time.Hour

// WorkersTTL is how long a worker's membership record lives without a
// heartbeat: a process that dies gives its share of the rate back after it.
const WorkersTTL = 6 * time.Second

// Header names set on dead letters.
const (
	HeaderReason  = "Tsfb-Reason"
	HeaderSubject = "Tsfb-Subject"
)

// Bus is a connection to NATS with every stream and bucket in place.
type Bus struct {
	NC *nats.Conn
	JS jetstream.JetStream

	Requests jetstream.KeyValue
	Jobs     jetstream.KeyValue
	Chunks   jetstream.KeyValue
	Outcomes jetstream.KeyValue
	Workers  jetstream.KeyValue
	Auth     jetstream.KeyValue
	Runs     jetstream.KeyValue

	cfg Config
	log *zap.Logger
}

// PublishAckTimeout bounds the wait for the ack of an asynchronous
// publish; a publish that times out is retried by its caller under the
// same message id, which the stream drops if the first one was stored.
const PublishAckTimeout = 10 * time.Second

// publishAckTimeout is what Open uses; tests shorten it.
var publishAckTimeout = PublishAckTimeout

// Open connects to cfg.URL (DefaultURL when empty), then creates or updates
// the streams and buckets. name identifies the connection on the server.
func Open(ctx context.Context, cfg Config, name string, log *zap.Logger) (*Bus, error) {
	cfg = cfg.Defaulted()
	nc, err := Connect(cfg, name, log)
	if err != nil {
		return nil, err
	}
	// Without a timeout, an asynchronous publish whose ack was lost with a
	// failed-over node would never resolve, and AwaitAck would wait for
	// its caller's whole deadline.
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishAckTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	b := &Bus{NC: nc, JS: js, cfg: cfg, log: log.Named("queue")}
	if err := b.Ensure(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	b.log.Debug("nats_ready", zap.String("server", nc.ConnectedUrlRedacted()))
	return b, nil
}

// Connect only connects to cfg.URL (DefaultURL when empty), with cfg's
// credentials, reconnecting for ever once connected; it creates nothing,
// for callers that only read.
func Connect(cfg Config, name string, log *zap.Logger) (*nats.Conn, error) {
	cfg = cfg.Defaulted()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	url := cfg.URL
	if url == "" {
		url = DefaultURL
	}
	log = log.Named("queue")
	opts := []nats.Option{
		nats.Name(name),
		nats.Timeout(DefaultConnectTimeout),
		// Keep trying for ever: a NATS outage must not end the process.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is our own Close.
			if err != nil {
				log.Warn("nats_disconnected", zap.Error(err))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats_reconnected", zap.String("server", nc.ConnectedUrlRedacted()))
		}),
	}
	switch {
	case cfg.CredsFile != "":
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password.Reveal()))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", config.RedactURLs(url), err)
	}
	return nc, nil
}

// Close drains nothing: callers stop their consumers first.
func (b *Bus) Close() {
	b.NC.Close()
}

// Ensure creates or updates every stream and bucket. It is safe to call
// again, also while the Bus is in use, for example after the server lost its
// state.
func (b *Bus) Ensure(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, EnsureTimeout)
	defer cancel()
	for _, sc := range b.streamConfigs() {
		err := retryEnsure(ctx, func(actx context.Context) error {
			sc.Replicas = b.replicasFor(actx, sc.Name)
			_, err := b.JS.CreateOrUpdateStream(actx, sc)
			return err
		})
		if err != nil {
			return fmt.Errorf("creating stream %s: %w", sc.Name, replicasHint(err, b.cfg.Replicas))
		}
	}
	kvs := []struct {
		name string
		ttl  time.Duration
		dst  *jetstream.KeyValue
	}{
		{BucketRequests, DefaultRecordTTL, &b.Requests},
		{BucketJobs, DefaultRecordTTL, &b.Jobs},
		{BucketChunks, DefaultRecordTTL, &b.Chunks},
		{BucketOutcomes, DefaultRecordTTL, &b.Outcomes},
		{BucketWorkers, WorkersTTL, &b.Workers},
		// No TTL: a count of rejected logins must not lapse on its own
		// while the credentials are still wrong.
		{BucketAuth, 0, &b.Auth},
		{BucketRuns, DefaultRecordTTL, &b.Runs},
	}
	for _, k := range kvs {
		var kv jetstream.KeyValue
		err := retryEnsure(ctx, func(actx context.Context) error {
			var err error
			kv, err = b.JS.CreateOrUpdateKeyValue(actx, jetstream.KeyValueConfig{
				Bucket:   k.name,
				TTL:      k.ttl,
				Storage:  jetstream.FileStorage,
				Replicas: b.replicasFor(actx, "KV_"+k.name),
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("creating KV bucket %s: %w", k.name, replicasHint(err, b.cfg.Replicas))
		}
		// A handle stays valid when its bucket is re-created, and other
		// goroutines read these fields, so only the first call sets them.
		if *k.dst == nil {
			*k.dst = kv
		}
	}
	return nil
}

func (b *Bus) streamConfigs() []jetstream.StreamConfig {
	r := b.cfg.Replicas
	return []jetstream.StreamConfig{{
		Name:        StreamJobs,
		Description: "fallback jobs waiting for a worker",
		Subjects:    []string{JobsPrefix + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
		Duplicates:  b.cfg.DuplicateWindow,
	}, {
		Name:        StreamCallbacks,
		Description: "raw ThingSpace callbacks, as received",
		Subjects:    []string{CallbackSubject},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
		MaxAge:      b.cfg.CallbacksMaxAge,
		Duplicates:  b.cfg.DuplicateWindow,
	}, {
		Name:        StreamResults,
		Description: "result events, one per device outcome and per job step",
		Subjects:    []string{ResultsPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
		MaxAge:      b.cfg.ResultsMaxAge,
		Duplicates:  b.cfg.DuplicateWindow,
	}, {
		Name:        StreamDead,
		Description: "jobs and callbacks that could not be processed, with the reason",
		Subjects:    []string{DeadPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    r,
		Duplicates:  b.cfg.DuplicateWindow,
	}}
}

// PublishEvent stores the event in FALLBACK_RESULTS with its message id, so
// a repeat inside the duplicate window is a no-op, and then sends it to
// replyTo when one is given.
func (b *Bus) PublishEvent(ctx context.Context, e model.Event, replyTo string) error {
	return b.PublishEvents(ctx, []model.Event{e}, []string{replyTo})[0]
}

// PublishEvents is PublishEvent for many events: each is sent with an
// asynchronous publish, the acks are awaited together (one round trip for
// the lot instead of one per event), and then each stored event is sent to
// its replyTo[i] when not empty. errs[i] is events[i]'s error; nil means
// stored. replyTo may be shorter than events.
func (b *Bus) PublishEvents(ctx context.Context, events []model.Event, replyTo []string) []error {
	errs := make([]error, len(events))
	futs := make([]jetstream.PubAckFuture, len(events))
	data := make([][]byte, len(events))
	for i := range events {
		e := &events[i]
		if e.At.IsZero() {
			e.At = time.Now().UTC()
		}
		d, err := json.Marshal(e)
		if err != nil {
			errs[i] = fmt.Errorf("encoding %s event: %w", e.Type, err)
			continue
		}
		data[i] = d
		msg := nats.NewMsg(ResultSubject(e.AccountName, e.JobID))
		msg.Data = d
		msg.Header.Set(jetstream.MsgIDHeader, e.MsgID())
		if futs[i], err = b.JS.PublishMsgAsync(msg); err != nil {
			errs[i] = fmt.Errorf("publishing %s event of job %s: %w", e.Type, e.JobID, err)
		}
	}
	for i, f := range futs {
		if f == nil {
			continue
		}
		e := &events[i]
		if err := AwaitAck(ctx, f); err != nil {
			errs[i] = fmt.Errorf("publishing %s event of job %s: %w", e.Type, e.JobID, err)
			continue
		}
		if i < len(replyTo) && replyTo[i] != "" {
			rmsg := nats.NewMsg(replyTo[i])
			rmsg.Data = data[i]
			rmsg.Header.Set(jetstream.MsgIDHeader, e.MsgID())
			if err := b.NC.PublishMsg(rmsg); err != nil {
				errs[i] = fmt.Errorf("publishing %s event of job %s to reply subject: %w", e.Type, e.JobID, err)
			}
		}
	}
	return errs
}

// AwaitAck waits for an asynchronous publish's ack, or ctx.
func AwaitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// DeadLetter stores body in FALLBACK_DEAD under the kind, with the reason.
func (b *Bus) DeadLetter(ctx context.Context, kind, reason string, body []byte, origSubject string) error {
	msg := nats.NewMsg(DeadSubject(kind))
	msg.Data = body
	msg.Header.Set(HeaderReason, truncate(reason, 4096))
	if origSubject != "" {
		msg.Header.Set(HeaderSubject, origSubject)
	}
	if _, err := b.JS.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("storing dead letter (%s): %w", kind, err)
	}
	return nil
}

// IsNotFound reports whether err says a KV key or a stream does not exist.
func IsNotFound(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrBucketNotFound)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
