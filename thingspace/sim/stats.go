package sim

import (
	"net/http"
	"strconv"
	"time"
)

// Stats are the simulator's counters, also served at GET /_sim/stats.
type Stats struct {
	// Requests counts answers by endpoint, then by HTTP status ("dropped"
	// when the connection was closed without one).
	Requests map[string]map[string]int64 `json:"requests"`
	// Logins counts successful logins, LoginFailures rejected ones.
	Logins        int64 `json:"logins"`
	LoginFailures int64 `json:"loginFailures"`
	TokensIssued  int64 `json:"tokensIssued"`
	// RequestsAccepted counts executed setfallbackattribute requests,
	// DevicesSubmitted their devices, DevicesResubmitted the devices seen
	// in more than one of them (each device once).
	RequestsAccepted   int64 `json:"requestsAccepted"`
	DevicesSubmitted   int64 `json:"devicesSubmitted"`
	DevicesResubmitted int64 `json:"devicesResubmitted"`
	RateLimited        int64 `json:"rateLimited"`
	// MaxRequestsPerSecond is the most accepted setfallbackattribute
	// requests in any one-second window.
	MaxRequestsPerSecond int64 `json:"maxRequestsPerSecond"`
	// CallbacksSent counts POSTs, CallbacksAcknowledged the 2xx answers,
	// CallbacksAbandoned deliveries that got no 2xx in CallbackMaxSends
	// sends, CallbacksUnregistered devices whose account had no listener.
	CallbacksSent         int64 `json:"callbacksSent"`
	CallbacksAcknowledged int64 `json:"callbacksAcknowledged"`
	CallbacksRetried      int64 `json:"callbacksRetried"`
	CallbacksAbandoned    int64 `json:"callbacksAbandoned"`
	CallbacksUnregistered int64 `json:"callbacksUnregistered"`
	CallbacksPending      int64 `json:"callbacksPending"`
}

// Stats returns a copy of the counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Requests = make(map[string]map[string]int64, len(s.stats.Requests))
	for ep, m := range s.stats.Requests {
		c := make(map[string]int64, len(m))
		for k, v := range m {
			c[k] = v
		}
		st.Requests[ep] = c
	}
	st.CallbacksPending = s.pending.Load()
	return st
}

func (s *Sim) countRequest(endpoint, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.stats.Requests[endpoint]
	if m == nil {
		m = map[string]int64{}
		s.stats.Requests[endpoint] = m
	}
	m[status]++
}

// countAccepted records an executed request in the one-second window.
// Called with s.mu held.
func (s *Sim) countAccepted(now time.Time) {
	s.stats.RequestsAccepted++
	cut := now.Add(-time.Second)
	i := 0
	for i < len(s.window) && !s.window[i].After(cut) {
		i++
	}
	s.window = append(s.window[i:], now)
	if n := int64(len(s.window)); n > s.stats.MaxRequestsPerSecond {
		s.stats.MaxRequestsPerSecond = n
	}
}

// recorder counts the answer as its status is written, before the client
// can see it, so a test that reads the counters after a call finds it.
type recorder struct {
	http.ResponseWriter
	count   func(status string)
	counted bool
}

func (r *recorder) mark(status string) {
	if !r.counted {
		r.counted = true
		r.count(status)
	}
}

func (r *recorder) WriteHeader(code int) {
	r.mark(strconv.Itoa(code))
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mark("200")
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Hijack and Flush.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
