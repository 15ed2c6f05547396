package sim

import (
	"encoding/json"
	"net/http"
	"net/url"
	"sort"

	"github.com/tsfallback/tsfallback/model"
)

// registration is a callback registration as the simulator keeps it.
type registration struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Username string `json:"username"`
	Password string `json:"password"`
}

// listed is a registration as listings show it: no credentials.
type listed struct {
	AccountName string `json:"accountName"`
	Name        string `json:"name"`
	URL         string `json:"url"`
}

func (s *Sim) account(w http.ResponseWriter, r *http.Request) (string, bool) {
	a := r.PathValue("account")
	if err := model.ValidateAccountName(a); err != nil {
		m2mError(w, http.StatusBadRequest, CodeAccountInvalid, "accountName: "+err.Error())
		return "", false
	}
	return a, true
}

func (s *Sim) handleRegister(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	acct, ok := s.account(w, r)
	if !ok {
		return
	}
	var reg registration
	if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
		m2mError(w, http.StatusBadRequest, CodeBodyMalformed, "request body is not valid JSON")
		return
	}
	if reg.Name == "" {
		m2mError(w, http.StatusBadRequest, "UnifiedWebService.INPUT_INVALID.ServiceName.Missing",
			"name is required")
		return
	}
	if u, err := url.Parse(reg.URL); err != nil || u.Host == "" ||
		(u.Scheme != "http" && u.Scheme != "https") {
		m2mError(w, http.StatusBadRequest, "UnifiedWebService.INPUT_INVALID.Url.Invalid",
			"url must be an http or https URL")
		return
	}
	s.mu.Lock()
	if s.regs[acct] == nil {
		s.regs[acct] = map[string]registration{}
	}
	s.regs[acct][reg.Name] = reg
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"accountName": acct, "name": reg.Name})
}

func (s *Sim) handleList(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	acct, ok := s.account(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	out := make([]listed, 0, len(s.regs[acct]))
	for _, reg := range s.regs[acct] {
		out = append(out, listed{AccountName: acct, Name: reg.Name, URL: reg.URL})
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, out)
}

func (s *Sim) handleDelete(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	acct, ok := s.account(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	s.mu.Lock()
	_, found := s.regs[acct][name]
	delete(s.regs[acct], name)
	s.mu.Unlock()
	if !found {
		m2mError(w, http.StatusNotFound, "UnifiedWebService.REQUEST_FAILED.Callback.NotFound",
			"no callback registered for that service")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"accountName": acct, "name": name})
}

type subRequest struct {
	IDs    []model.DeviceID `json:"ids"`
	Status string           `json:"status"`
}

func (s *Sim) handleStatus(w http.ResponseWriter, r *http.Request) {
	if !s.guard(w, r) {
		return
	}
	acct, ok := s.account(w, r)
	if !ok {
		return
	}
	s.mu.Lock()
	sr := s.requests[r.PathValue("requestId")]
	s.mu.Unlock()
	if sr == nil || sr.account != acct {
		m2mError(w, http.StatusNotFound, "UnifiedWebService.REQUEST_FAILED.RequestId.NotFound",
			"request not found")
		return
	}
	subs := make([]subRequest, len(sr.devices))
	for i, d := range sr.devices {
		subs[i] = subRequest{IDs: d.DeviceIDs, Status: model.StatusSuccess}
		if sr.failed[i] {
			subs[i].Status = model.StatusFailed
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"requestId": sr.id, "status": "COMPLETED", "subRequests": subs,
	})
}
