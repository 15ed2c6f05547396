package callback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
)

// RequestStatus is what a StatusChecker knows of a request: its status and
// the status of some of its devices.
type RequestStatus struct {
	Status  string
	Devices []DeviceStatus
}

// DeviceStatus is the status of the device named by IDs.
type DeviceStatus struct {
	IDs    []model.DeviceID
	Status string
}

// StatusChecker asks ThingSpace for a request's status before the sweeper
// times its devices out. The thingspace client fits it through a small
// adapter (its RequestStatus type has the same content).
type StatusChecker interface {
	RequestStatus(ctx context.Context, account, requestID string) (RequestStatus, error)
}

// statusCheckTimeout bounds one best-effort status check.
const statusCheckTimeout = 10 * time.Second

// Sweeper gives devices that had no final callback within Config.Timeout a
// device.timed_out outcome.
type Sweeper struct {
	cfg     Config
	bus     *queue.Bus
	tr      *progress.Tracker
	checker StatusChecker
	log     *zap.Logger
	now     func() time.Time
}

// NewSweeper checks cfg and returns a sweeper. checker may be nil: then
// devices are timed out without asking ThingSpace.
func NewSweeper(cfg Config, bus *queue.Bus, tr *progress.Tracker, checker StatusChecker,
	log *zap.Logger) (*Sweeper, error) {
	cfg = cfg.Defaulted()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bus == nil || tr == nil {
		return nil, errors.New("callback: sweeper needs a bus and a progress tracker")
	}
	if log == nil {
		log = zap.NewNop()
	}
	registerTracker(tr)
	return &Sweeper{cfg: cfg, bus: bus, tr: tr, checker: checker, log: log.Named("sweeper"), now: time.Now}, nil
}

// Run sweeps every SweepInterval until ctx is done. Several sweepers may run
// at once: outcomes are recorded once whoever records them.
func (s *Sweeper) Run(ctx context.Context) error {
	s.log.Info("sweeper_started", zap.Duration("timeout", s.cfg.Timeout))
	t := time.NewTicker(s.cfg.SweepInterval)
	defer t.Stop()
	for {
		if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("sweep_failed", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			s.log.Info("sweeper_stopped")
			return nil
		case <-t.C:
		}
	}
}

// Sweep looks at every request once and times out its overdue devices.
//
// Limitation: it reads every request record in the bucket on each sweep;
// fine for the tens of thousands a 72-hour record lifetime holds at the
// rates ThingSpace allows, slow beyond a few million.
func (s *Sweeper) Sweep(ctx context.Context) error {
	counters.sweeps.Add(1)
	lister, err := s.bus.Requests.ListKeys(ctx)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return nil
		}
		return fmt.Errorf("listing requests: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var errs []error
	for key := range lister.Keys() {
		if err := s.sweepRequest(ctx, key); err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

func (s *Sweeper) sweepRequest(ctx context.Context, requestID string) error {
	entry, err := s.bus.Requests.Get(ctx, requestID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading request %s: %w", requestID, err)
	}
	var rec model.RequestRecord
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return fmt.Errorf("decoding request %s: %w", requestID, err)
	}
	submitted := submittedAt(rec.SubmittedAt)
	if submitted.IsZero() {
		submitted = entry.Created()
	}
	age := s.now().Sub(submitted)
	if age < s.cfg.Timeout {
		return nil
	}
	if st, err := s.tr.Get(ctx, rec.JobID); err == nil && st.Completed {
		return nil
	}

	var pending []model.Device
	for _, d := range rec.Devices {
		key := requestID + "." + d.Key()
		_, err := s.bus.Outcomes.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			pending = append(pending, d)
		case err != nil && !errors.Is(err, jetstream.ErrInvalidKey):
			return fmt.Errorf("reading outcome %s: %w", key, err)
		}
	}
	if len(pending) == 0 {
		return nil
	}

	statuses := s.check(ctx, &rec)
	var outs []progress.Outcome
	for i := range pending {
		d := pending[i]
		e := model.Event{Type: model.EventDeviceTimedOut, JobID: rec.JobID, AccountName: rec.AccountName,
			RequestID: requestID, Device: &d,
			Fault: &model.Fault{Code: "TIMEOUT", Message: fmt.Sprintf("no final callback within %s", s.cfg.Timeout)}}
		switch status := statusOf(statuses, d); {
		case status == "SUCCESS" || status == "COMPLETED":
			e.Type, e.Status, e.Fault = model.EventDeviceSucceeded, model.StatusSuccess, nil
		case status == "FAILED" || status == "FAILURE":
			e.Type, e.Status = model.EventDeviceFailed, model.StatusFailed
			e.Fault = &model.Fault{Code: "FAILED", Message: "request status reports a failure"}
		case status != "" && age < 2*s.cfg.Timeout:
			// ThingSpace still works on it: give it one more period.
			continue
		}
		outs = append(outs, progress.Outcome{Event: e, ReplyTo: rec.ReplyTo, Source: progress.SourceSweeper})
	}
	if len(outs) == 0 {
		return nil
	}
	if err := s.tr.Record(ctx, outs); err != nil {
		return fmt.Errorf("recording time-outs of request %s: %w", requestID, err)
	}
	counters.timedOut.Add(int64(len(outs)))
	s.log.Info("devices_timed_out", zap.String("request_id", requestID),
		zap.String("job_id", rec.JobID), zap.Int("devices", len(outs)))
	return nil
}

// check asks the status checker, best effort: an error means no answer.
func (s *Sweeper) check(ctx context.Context, rec *model.RequestRecord) *RequestStatus {
	if s.checker == nil {
		return nil
	}
	counters.statusChecked.Add(1)
	ctx, cancel := context.WithTimeout(ctx, statusCheckTimeout)
	defer cancel()
	st, err := s.checker.RequestStatus(ctx, rec.AccountName, rec.RequestID)
	if err != nil {
		s.log.Debug("request_status_failed", zap.String("request_id", rec.RequestID), zap.Error(err))
		return nil
	}
	return &st
}

// statusOf is the upper-cased status the checker gives for the device: its
// own when listed, else the request's when it lists no devices; "" when
// unknown.
func statusOf(st *RequestStatus, d model.Device) string {
	if st == nil {
		return ""
	}
	for _, ds := range st.Devices {
		if matchDevice(&model.RequestRecord{Devices: []model.Device{d}}, model.Device{DeviceIDs: ds.IDs}) != nil {
			return strings.ToUpper(ds.Status)
		}
	}
	if len(st.Devices) == 0 {
		return strings.ToUpper(st.Status)
	}
	return ""
}

// submittedAt reads RequestRecord.SubmittedAt, whose unit the record does
// not state: Unix seconds, or milliseconds/micro/nanoseconds by magnitude.
func submittedAt(v int64) time.Time {
	switch {
	case v <= 0:
		return time.Time{}
	case v > 1e17:
		return time.Unix(0, v)
	case v > 1e14:
		return time.UnixMicro(v)
	case v > 1e11:
		return time.UnixMilli(v)
	}
	return time.Unix(v, 0)
}
