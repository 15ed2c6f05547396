package sim

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"go.uber.org/zap"
)

// delivery is one callback to send, with its sends so far.
type delivery struct {
	req    *simRequest
	dev    model.Device
	reg    registration
	status string
	fault  *model.FaultResponse
	shape  string
	sends  int
	// next is queued once this delivery is acknowledged or abandoned: the
	// final callback after a non-final one.
	next  *delivery
	early *earlyBatch
}

// earlyBatch lets an answer wait for the first send of its callbacks.
type earlyBatch struct {
	left atomic.Int64
	ch   chan struct{}
}

func newEarlyBatch(n int) *earlyBatch {
	b := &earlyBatch{ch: make(chan struct{})}
	b.left.Store(int64(n))
	return b
}

func (b *earlyBatch) done() {
	if b.left.Add(-1) == 0 {
		close(b.ch)
	}
}

// enqueue counts d as pending and queues it, blocking while the queue is
// full: back-pressure on the submitter, as a busy ThingSpace would give.
func (s *Sim) enqueue(d *delivery) {
	s.pending.Add(1)
	s.put(d)
}

// put queues a delivery already counted as pending.
func (s *Sim) put(d *delivery) {
	select {
	case s.queue <- d:
	case <-s.done:
		s.finish(d, false)
	}
}

// later queues d after wait, tracked so that Close can cancel it.
func (s *Sim) later(d *delivery, wait time.Duration) {
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		s.finish(d, false)
		return
	default:
	}
	s.timers.Add(1)
	var t *time.Timer
	t = time.AfterFunc(wait, func() {
		defer s.timers.Done()
		s.mu.Lock()
		delete(s.retries, t)
		s.mu.Unlock()
		s.put(d)
	})
	s.retries[t] = d
	s.mu.Unlock()
}

func (s *Sim) sender() {
	defer s.senders.Done()
	for {
		select {
		case d := <-s.queue:
			s.send(d)
		case <-s.done:
			return
		}
	}
}

// send POSTs one callback and decides what follows: done, retry or give up.
func (s *Sim) send(d *delivery) {
	d.sends++
	body := render(d, s.cfg.CallbackMaxSends)
	ok := s.post(d.reg.URL, body)

	s.mu.Lock()
	s.stats.CallbacksSent++
	if ok {
		s.stats.CallbacksAcknowledged++
	}
	s.mu.Unlock()
	if d.early != nil {
		d.early.done()
		d.early = nil
	}

	switch {
	case ok:
		s.finish(d, true)
	case d.sends < s.cfg.CallbackMaxSends:
		s.mu.Lock()
		s.stats.CallbacksRetried++
		s.mu.Unlock()
		s.later(d, s.cfg.CallbackRetryInterval)
	default:
		s.mu.Lock()
		s.stats.CallbacksAbandoned++
		s.mu.Unlock()
		s.log.Warn("sim_callback_abandoned", zap.String("request_id", d.req.id),
			zap.Int("sends", d.sends))
		s.finish(d, true)
	}
}

// finish ends a delivery; live says whether its follower should be sent.
func (s *Sim) finish(d *delivery, live bool) {
	if d.early != nil {
		d.early.done()
		d.early = nil
	}
	if d.next != nil {
		next := d.next
		d.next = nil
		s.pending.Add(1)
		if live {
			// From a timer goroutine: a sender must never block on the
			// queue it drains.
			s.later(next, 0)
		} else {
			s.finish(next, false)
		}
	}
	s.pending.Add(-1)
}

func (s *Sim) post(url string, body []byte) bool {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.CallbackTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.hc.Do(req)
	if err != nil {
		s.log.Debug("sim_callback_failed", zap.Error(err))
		return false
	}
	// Drained so the connection is kept alive for the next callback.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode <= 299
}

// render builds the callback body in the delivery's shape.
func render(d *delivery, maxSends int) []byte {
	ids := d.dev.DeviceIDs
	if d.shape == ShapeUpperKind {
		up := make([]model.DeviceID, len(ids))
		for i, id := range ids {
			up[i] = model.DeviceID{Kind: strings.ToUpper(id.Kind), ID: id.ID}
		}
		ids = up
	}
	switch d.shape {
	case ShapePascal:
		return pascalBody(d, ids, maxSends)
	case ShapeStringCount:
		b := standardBody(d, ids, maxSends)
		return mustJSON(struct {
			model.CallbackBody
			CallbackCount        string `json:"callbackCount"`
			MaxCallbackThreshold string `json:"maxCallbackThreshold"`
		}{b, strconv.Itoa(b.CallbackCount), strconv.Itoa(b.MaxCallbackThreshold)})
	case ShapeCollection:
		b := standardBody(d, ids, maxSends)
		b.DeviceIDs = nil
		return mustJSON(b)
	}
	return mustJSON(standardBody(d, ids, maxSends))
}

func standardBody(d *delivery, ids []model.DeviceID, maxSends int) model.CallbackBody {
	return model.CallbackBody{
		RequestID: d.req.id,
		DeviceIDs: ids,
		DeviceResponse: &model.DeviceResponse{DeviceProfileResponse: &model.DeviceProfileResponse{
			DeviceIdentifierCollection: ids,
		}},
		FaultResponse:        d.fault,
		Status:               d.status,
		CallbackCount:        d.sends,
		MaxCallbackThreshold: maxSends,
		Username:             d.reg.Username,
		Password:             d.reg.Password,
	}
}

func pascalBody(d *delivery, ids []model.DeviceID, maxSends int) []byte {
	pids := make([]map[string]string, len(ids))
	for i, id := range ids {
		pids[i] = map[string]string{"Kind": id.Kind, "Id": id.ID}
	}
	m := map[string]any{
		"RequestId": d.req.id,
		"DeviceIds": pids,
		"DeviceResponse": map[string]any{"DeviceProfileResponse": map[string]any{
			"DeviceIdentifierCollection": pids,
		}},
		"Status":               d.status,
		"CallbackCount":        d.sends,
		"MaxCallbackThreshold": maxSends,
		"Username":             d.reg.Username,
		"Password":             d.reg.Password,
	}
	if d.fault != nil {
		m["FaultResponse"] = map[string]string{
			"FaultCode": d.fault.FaultCode, "FaultString": d.fault.FaultString,
		}
	}
	return mustJSON(m)
}
