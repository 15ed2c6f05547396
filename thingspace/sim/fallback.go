package sim

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"sort"
	"time"

	"github.com/google/uuid"
	"github.com/tsfallback/tsfallback/model"
	"go.uber.org/zap"
)

// Answer codes of setfallbackattribute.
const (
	CodeBodyMalformed   = "UnifiedWebService.INPUT_INVALID.Body.Malformed"
	CodeAccountInvalid  = "UnifiedWebService.INPUT_INVALID.AccountName.Invalid"
	CodeDevicesMissing  = "UnifiedWebService.INPUT_INVALID.Devices.Missing"
	CodeDevicesTooMany  = "UnifiedWebService.INPUT_INVALID.Devices.TooMany"
	CodeDeviceIDMissing = "UnifiedWebService.INPUT_INVALID.DeviceId.Missing"
	CodeDeviceIDInvalid = "UnifiedWebService.INPUT_INVALID.DeviceId.Invalid"
	CodeInternal        = "UnifiedWebService.REQUEST_FAILED.InternalError"
	// FaultCodeDevice is the faultcode of a FAILED device's callback.
	FaultCodeDevice = "REQUEST_FAILED.FallbackNotApplied"
)

// earliestDeliveryWait caps how long an answer waits for its early
// callbacks, so a listener that hangs does not hang the client too.
const earliestDeliveryWait = 5 * time.Second

// simRequest is an executed request, kept for the status call.
//
// Limitation: every executed request stays in memory until Close; fine for
// tests and demos (about 1 KB per device), not for a week-long soak.
type simRequest struct {
	id      string
	account string
	devices []model.Device
	failed  []bool
}

func chance(p float64) bool { return p > 0 && rand.Float64() < p }

// deviceChance decides per device and knob, stably, so a device that
// fails keeps failing when resubmitted.
func deviceChance(key, salt string, p float64) bool {
	if p <= 0 {
		return false
	}
	h := fnv.New64a()
	h.Write([]byte(salt))
	h.Write([]byte(key))
	return float64(h.Sum64()>>11)/float64(1<<53) < p
}

func (s *Sim) validate(req model.SetFallbackRequest) (code, msg string) {
	if err := model.ValidateAccountName(req.AccountName); err != nil {
		return CodeAccountInvalid, "accountName: " + err.Error()
	}
	switch n := len(req.Devices); {
	case n == 0:
		return CodeDevicesMissing, "devices: at least one device is required"
	case n > s.cfg.MaxDevices:
		return CodeDevicesTooMany, fmt.Sprintf("devices: %d devices, at most %d", n, s.cfg.MaxDevices)
	}
	for i, d := range req.Devices {
		if len(d.DeviceIDs) == 0 {
			return CodeDeviceIDMissing, fmt.Sprintf("devices[%d].deviceIds: no identifiers", i)
		}
		for k, id := range d.DeviceIDs {
			if id.Kind == "" || id.ID == "" {
				return CodeDeviceIDMissing,
					fmt.Sprintf("devices[%d].deviceIds[%d]: both kind and id are required", i, k)
			}
			if err := model.ValidateDeviceID(id); err != nil {
				return CodeDeviceIDInvalid, fmt.Sprintf("devices[%d].deviceIds[%d]: %v", i, k, err)
			}
		}
	}
	return "", ""
}

// wait sleeps d unless the request or the simulator ends first.
func (s *Sim) wait(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.done:
	}
	return false
}

func (s *Sim) handleSetFallback(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	var req model.SetFallbackRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		m2mError(w, http.StatusBadRequest, CodeBodyMalformed, "request body is not valid JSON")
		return
	}
	if code, msg := s.validate(req); code != "" {
		m2mError(w, http.StatusBadRequest, code, msg)
		return
	}
	if s.cfg.Latency > 0 && !s.wait(r, s.cfg.Latency) {
		return
	}
	if chance(s.cfg.ErrorRatio) {
		m2mError(w, http.StatusInternalServerError, CodeInternal, "Internal error, please retry")
		return
	}

	sr := s.execute(req)
	ds := s.plan(sr)
	drop := chance(s.cfg.DropRatio)
	late := !drop && chance(s.cfg.TimeoutRatio)

	if s.cfg.EarlyCallbacks && len(ds) > 0 {
		b := newEarlyBatch(len(ds))
		for _, d := range ds {
			d.early = b
			s.enqueue(d)
		}
		ds = nil
		t := time.NewTimer(earliestDeliveryWait)
		select {
		case <-b.ch:
		case <-t.C:
		case <-r.Context().Done():
		case <-s.done:
		}
		t.Stop()
	}

	switch {
	case drop:
		s.drop(w, ds)
		return
	case late:
		for _, d := range ds {
			s.enqueue(d)
		}
		if !s.wait(r, s.cfg.TimeoutDelay) {
			return
		}
		writeJSON(w, http.StatusOK, model.SetFallbackResponse{RequestID: sr.id})
		return
	}
	writeJSON(w, http.StatusOK, model.SetFallbackResponse{RequestID: sr.id})
	// The answer leaves first, then the callbacks, as ThingSpace does.
	_ = http.NewResponseController(w).Flush()
	for _, d := range ds {
		s.enqueue(d)
	}
}

// drop closes the connection of an executed request without an answer.
func (s *Sim) drop(w http.ResponseWriter, ds []*delivery) {
	for _, d := range ds {
		s.enqueue(d)
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if rec, ok := w.(*recorder); ok && err == nil {
		rec.mark("dropped")
	}
	if err != nil {
		s.log.Warn("sim_hijack_failed", zap.Error(err))
		m2mError(w, http.StatusInternalServerError, CodeInternal, "Internal error")
		return
	}
	_ = conn.Close()
}

// execute records an accepted request and decides each device's outcome.
func (s *Sim) execute(req model.SetFallbackRequest) *simRequest {
	sr := &simRequest{
		id:      uuid.NewString(),
		account: req.AccountName,
		devices: req.Devices,
		failed:  make([]bool, len(req.Devices)),
	}
	for i, d := range req.Devices {
		sr.failed[i] = deviceChance(d.Key(), "fail", s.cfg.FailRatio)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[sr.id] = sr
	s.countAccepted(time.Now())
	s.stats.DevicesSubmitted += int64(len(req.Devices))
	for _, d := range req.Devices {
		k := d.Key()
		s.seen[k]++
		if s.seen[k] == 2 {
			s.stats.DevicesResubmitted++
		}
	}
	return sr
}

// plan builds the deliveries of a request: one per device, plus the
// duplicates and non-final statuses the knobs ask for.
func (s *Sim) plan(sr *simRequest) []*delivery {
	s.mu.Lock()
	reg, ok := s.listener(sr.account)
	if !ok {
		s.stats.CallbacksUnregistered += int64(len(sr.devices))
	}
	s.mu.Unlock()
	if !ok {
		return nil
	}

	var ds []*delivery
	for i, dev := range sr.devices {
		key := dev.Key()
		d := &delivery{req: sr, dev: dev, reg: reg, status: model.StatusSuccess,
			shape: s.shapeFor(key)}
		if sr.failed[i] {
			d.status = model.StatusFailed
			d.fault = &model.FaultResponse{FaultCode: FaultCodeDevice,
				FaultString: "The fallback attribute could not be set on the device"}
		}
		first := d
		if deviceChance(key, "nonfinal", s.cfg.NonFinalRatio) {
			// The final callback is queued once the non-final one is done.
			first = &delivery{req: sr, dev: dev, reg: reg, status: s.cfg.NonFinalStatus,
				shape: d.shape, next: d}
		}
		ds = append(ds, first)
		if deviceChance(key, "dup", s.cfg.DuplicateRatio) {
			dup := *d
			ds = append(ds, &dup)
		}
	}
	if s.cfg.OutOfOrder {
		rand.Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
	}
	return ds
}

// listener returns the registration that receives an account's callbacks.
// Called with s.mu held.
func (s *Sim) listener(account string) (registration, bool) {
	regs := s.regs[account]
	if r, ok := regs[s.cfg.CallbackService]; ok {
		return r, true
	}
	names := make([]string, 0, len(regs))
	for n := range regs {
		names = append(names, n)
	}
	if len(names) == 0 {
		return registration{}, false
	}
	sort.Strings(names)
	return regs[names[0]], true
}

func (s *Sim) shapeFor(key string) string {
	if s.cfg.CallbackShape != ShapeMixed {
		return s.cfg.CallbackShape
	}
	h := fnv.New32a()
	h.Write([]byte(key))
	return shapes[int(h.Sum32()%uint32(len(shapes)))]
}
