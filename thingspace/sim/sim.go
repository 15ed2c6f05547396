package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// ErrClosed is returned by calls on a closed simulator.
var ErrClosed = errors.New("sim: closed")

// maxBody bounds every request body: 100 devices take about 10 KB.
const maxBody = 4 << 20

// Sim is the simulator. Its senders run from New until Close, whether it
// is served by Start or through Handler.
type Sim struct {
	cfg     Config
	log     *zap.Logger
	mux     *http.ServeMux
	limiter *rate.Limiter
	hc      *http.Client

	done      chan struct{}
	ctx       context.Context // cancelled by Close, for callback POSTs
	cancel    context.CancelFunc
	closeOnce sync.Once
	senders   sync.WaitGroup
	timers    sync.WaitGroup
	queue     chan *delivery
	pending   atomic.Int64

	srvMu sync.Mutex
	srv   *http.Server

	mu        sync.Mutex
	token     string
	tokenExp  time.Time
	tokens    map[string]time.Time
	sessions  map[string]*simSession
	failedRow int
	locked    bool
	regs      map[string]map[string]registration
	requests  map[string]*simRequest
	seen      map[string]int
	window    []time.Time
	retries   map[*time.Timer]*delivery
	stats     Stats
}

// New returns a simulator with its callback senders running.
func New(cfg Config, log *zap.Logger) (*Sim, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Sim{
		cfg:      cfg,
		log:      log.Named("sim"),
		done:     make(chan struct{}),
		ctx:      ctx,
		cancel:   cancel,
		queue:    make(chan *delivery, cfg.QueueSize),
		tokens:   map[string]time.Time{},
		sessions: map[string]*simSession{},
		regs:     map[string]map[string]registration{},
		requests: map[string]*simRequest{},
		seen:     map[string]int{},
		retries:  map[*time.Timer]*delivery{},
		stats:    Stats{Requests: map[string]map[string]int64{}},
	}
	if cfg.RateRPS > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(cfg.RateRPS), cfg.RateBurst)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = cfg.Senders * 2
	t.MaxIdleConnsPerHost = cfg.Senders
	s.hc = &http.Client{Transport: t, Timeout: cfg.CallbackTimeout}
	s.routes()
	for i := 0; i < cfg.Senders; i++ {
		s.senders.Add(1)
		go s.sender()
	}
	return s, nil
}

func (s *Sim) routes() {
	s.mux = http.NewServeMux()
	h := func(pattern, endpoint string, f http.HandlerFunc) {
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			rec := &recorder{ResponseWriter: w,
				count: func(status string) { s.countRequest(endpoint, status) }}
			r.Body = http.MaxBytesReader(rec, r.Body, maxBody)
			f(rec, r)
			rec.mark("200")
		})
	}
	h("POST /api/ts/v1/oauth2/token", "token", s.handleToken)
	h("POST /api/m2m/v1/session/login", "login", s.handleLogin)
	h("POST /api/m2m/v1/session/logout", "logout", s.handleLogout)
	h("POST /api/m2m/v1/devices/profile/actions/setfallbackattribute", "setfallbackattribute",
		s.handleSetFallback)
	h("POST /api/m2m/v1/callbacks/{account}", "callbacks.register", s.handleRegister)
	h("GET /api/m2m/v1/callbacks/{account}", "callbacks.list", s.handleList)
	h("DELETE /api/m2m/v1/callbacks/{account}/name/{name}", "callbacks.delete", s.handleDelete)
	h("GET /api/m2m/v2/accounts/{account}/requests/{requestId}/status", "requeststatus",
		s.handleStatus)
	s.mux.HandleFunc("GET /_sim/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
}

// Handler serves the API under /api and the counters at /_sim/stats.
func (s *Sim) Handler() http.Handler { return s.mux }

// Start listens on addr ("127.0.0.1:0" picks a port) and returns the API
// base, like "http://127.0.0.1:PORT/api".
func (s *Sim) Start(addr string) (string, error) {
	select {
	case <-s.done:
		return "", ErrClosed
	default:
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("listening on %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler: s.mux,
		// Bounds on slow clients; the write timeout stays above
		// TimeoutDelay so the delayed-answer fault can happen.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      s.cfg.TimeoutDelay + s.cfg.Latency + 30*time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	s.srvMu.Lock()
	s.srv = srv
	s.srvMu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("sim_serve_failed", zap.Error(err))
		}
	}()
	s.log.Info("sim_started", zap.String("addr", ln.Addr().String()))
	return "http://" + ln.Addr().String() + "/api", nil
}

// Close stops the server and the senders. Queued and scheduled callbacks
// are dropped. Order: stop delayed handlers and senders (done), then the
// server, then wait for the goroutines.
func (s *Sim) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		s.cancel()

		s.srvMu.Lock()
		srv := s.srv
		s.srvMu.Unlock()
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if e := srv.Shutdown(ctx); e != nil {
				err = srv.Close()
			}
			cancel()
		}

		s.mu.Lock()
		var dropped []*delivery
		for t, d := range s.retries {
			if t.Stop() {
				s.timers.Done()
				dropped = append(dropped, d)
			}
		}
		s.retries = map[*time.Timer]*delivery{}
		s.mu.Unlock()
		s.timers.Wait()
		s.senders.Wait()
		for _, d := range dropped {
			s.finish(d, false)
		}
		for len(s.queue) > 0 {
			s.finish(<-s.queue, false)
		}
		s.hc.CloseIdleConnections()
		s.log.Info("sim_stopped")
	})
	return err
}

// Idle waits until no callback is queued, in flight or scheduled for a
// retry.
func (s *Sim) Idle(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for s.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d callbacks: %w", s.pending.Load(), ctx.Err())
		case <-s.done:
			return ErrClosed
		case <-t.C:
		}
	}
	return nil
}

// Pending returns the callbacks queued, in flight or awaiting a retry.
func (s *Sim) Pending() int { return int(s.pending.Load()) }

// ExpireSessions makes every session expired now, as 20 idle minutes do.
func (s *Sim) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ss := range s.sessions {
		ss.expired = true
	}
}

// ForgetSessions drops every session, so their tokens become unknown
// (SessionToken.Invalid), as after a ThingSpace restart.
func (s *Sim) ForgetSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions = map[string]*simSession{}
}

// ExpireTokens makes every access token expired now.
func (s *Sim) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for t := range s.tokens {
		s.tokens[t] = time.Time{}
	}
	s.tokenExp = time.Time{}
}

// Unlock lifts a login lockout, as Verizon support does.
func (s *Sim) Unlock() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.locked, s.failedRow = false, 0
}

// Locked reports whether failed logins locked the account.
func (s *Sim) Locked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.locked
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// m2mError answers in the M2M errorCode shape.
func m2mError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"errorCode": code, "errorMessage": msg})
}
