package callback

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/progress"
	"github.com/tsfallback/tsfallback/queue"
)

// CallbackPath is where ThingSpace posts callbacks.
const CallbackPath = "/callbacks/thingspace"

// Fixed limits of the ingester; the server timeouts are in Config.
const (
	// ReadyTimeout bounds the NATS checks of /readyz.
	ReadyTimeout = 2 * time.Second
	// ShutdownTimeout is how long in-flight callbacks get to finish.
	ShutdownTimeout = 10 * time.Second
	// silentGrace is how long, once shutdown starts, a connection that has
	// not sent a byte keeps its chance to send its request before it is
	// closed. net/http alone waits about 5 s for such connections, which
	// HTTP clients open as spares; a client that was about to use one sees
	// a closed connection, no 2xx, and sends the callback again.
	silentGrace = 200 * time.Millisecond
	// MaxHeaderBytes: ThingSpace sends a handful of short headers.
	MaxHeaderBytes = 16 << 10
)

// Ingester is the HTTP endpoint that takes ThingSpace's callbacks.
type Ingester struct {
	cfg      Config
	bus      *queue.Bus
	log      *zap.Logger
	tracker  *progress.Tracker
	filter   sourceFilter
	admins   sourceFilter
	inFlight chan struct{}
	user     [sha256.Size]byte
	pass     [sha256.Size]byte
	mux      *http.ServeMux // the callback port
	adminMux *http.ServeMux // the admin listener
	silent   silentConns
}

// NewIngester checks cfg and returns an ingester that stores callbacks on
// bus.
func NewIngester(cfg Config, bus *queue.Bus, log *zap.Logger) (*Ingester, error) {
	cfg = cfg.Defaulted()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bus == nil {
		return nil, errors.New("callback: ingester needs a bus")
	}
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("ingester")
	tr, err := progress.New(bus, log)
	if err != nil {
		return nil, fmt.Errorf("creating progress tracker: %w", err)
	}
	allow, _ := parsePrefixes(cfg.Allow) // checked by Validate
	proxies, _ := parsePrefixes(cfg.TrustedProxies)
	admins, _ := adminPrefixes(cfg.AdminAllow)
	in := &Ingester{
		cfg:      cfg,
		bus:      bus,
		log:      log,
		tracker:  tr,
		filter:   sourceFilter{allow: allow, proxies: proxies},
		admins:   sourceFilter{allow: admins, proxies: proxies},
		inFlight: make(chan struct{}, cfg.MaxInFlight),
		user:     sha256.Sum256([]byte(cfg.Username.Reveal())),
		pass:     sha256.Sum256([]byte(cfg.Password.Reveal())),
		mux:      http.NewServeMux(),
		adminMux: http.NewServeMux(),
	}
	health := func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") }
	in.mux.HandleFunc(CallbackPath, in.serveCallback)
	in.mux.HandleFunc("GET /healthz", health)
	in.mux.HandleFunc("GET /readyz", in.serveReady)
	in.adminMux.HandleFunc("GET /healthz", health)
	in.adminMux.HandleFunc("GET /readyz", in.serveReady)
	in.adminMux.HandleFunc("GET /metrics", serveMetrics)
	in.adminMux.HandleFunc("GET /v1/jobs/{jobId}", in.serveJob)
	if cfg.AdminAddr == "" {
		// Without an admin listener the callback port, which faces
		// ThingSpace and so the internet, shows job contents and metrics
		// only to AdminAllow.
		in.mux.Handle("GET /metrics", in.adminOnly(in.adminMux))
		in.mux.Handle("GET /v1/jobs/{jobId}", in.adminOnly(in.adminMux))
	}
	return in, nil
}

// Handler returns the routes of the callback port: the callback, the
// probes, and the admin routes (to AdminAllow) unless AdminAddr is set.
func (in *Ingester) Handler() http.Handler { return in.mux }

// AdminHandler returns the routes of the admin listener: the probes,
// /metrics and /v1/jobs/{jobId}, to every source.
func (in *Ingester) AdminHandler() http.Handler { return in.adminMux }

// Serve answers callbacks on ln until ctx is done, then stops taking
// connections and gives in-flight callbacks ShutdownTimeout to finish.
func (in *Ingester) Serve(ctx context.Context, ln net.Listener) error {
	return in.serve(ctx, ln, in.mux, "ingester")
}

// ServeAdmin answers the admin routes (AdminHandler) on ln, normally a
// listener on Config.AdminAddr, until ctx is done.
func (in *Ingester) ServeAdmin(ctx context.Context, ln net.Listener) error {
	return in.serve(ctx, ln, in.adminMux, "admin")
}

func (in *Ingester) serve(ctx context.Context, ln net.Listener, h http.Handler, name string) error {
	log := in.log.Named(name)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: in.cfg.ReadHeaderTimeout,
		ReadTimeout:       in.cfg.ReadTimeout,
		WriteTimeout:      in.cfg.WriteTimeout,
		IdleTimeout:       in.cfg.IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnState:         in.silent.track,
	}
	ln = newLimitListener(ln, in.cfg.MaxConns)
	log.Info("listening", zap.String("addr", ln.Addr().String()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving %s: %w", name, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(sctx) }()
	var err error
	select {
	case err = <-shut:
	case <-time.After(silentGrace):
		in.silent.closeAll()
		err = <-shut
	}
	if err != nil {
		_ = srv.Close()
	}
	<-errc
	log.Info("stopped")
	if err != nil {
		return fmt.Errorf("shutting down %s: %w", name, err)
	}
	return nil
}

// adminOnly lets through the sources of AdminAllow. A request that came
// through a proxy we do not trust is refused whatever its peer: a proxy on
// loopback would otherwise make every internet client look local.
func (in *Ingester) adminOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(in.admins.allow) == 0 || !in.admins.allowed(r) || in.admins.untrustedForward(r) {
			writeText(w, http.StatusForbidden, "forbidden")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authFields is just enough of a callback to authenticate it. encoding/json
// matches these names in any casing.
type authFields struct {
	Username json.RawMessage `json:"username"`
	Password json.RawMessage `json:"password"`
}

func (in *Ingester) serveCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		in.reply(w, http.StatusMethodNotAllowed)
		return
	}
	if !in.filter.allowed(r) {
		in.log.Warn("callback_source_refused", zap.String("remote_addr", r.RemoteAddr))
		in.reply(w, http.StatusForbidden)
		return
	}
	if !jsonContentType(r.Header.Get("Content-Type")) {
		in.reply(w, http.StatusUnsupportedMediaType)
		return
	}
	if r.ContentLength > in.cfg.MaxBody {
		in.reply(w, http.StatusRequestEntityTooLarge)
		return
	}
	select {
	case in.inFlight <- struct{}{}:
		defer func() { <-in.inFlight }()
	default:
		w.Header().Set("Retry-After", "1")
		in.reply(w, http.StatusServiceUnavailable)
		return
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, in.cfg.MaxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		in.reply(w, http.StatusRequestEntityTooLarge)
		return
	case errors.Is(err, os.ErrDeadlineExceeded):
		// A body that stalls past the read timeout: 408, which ThingSpace
		// treats like any other failed delivery and sends again.
		in.reply(w, http.StatusRequestTimeout)
		return
	case err != nil:
		in.reply(w, http.StatusBadRequest)
		return
	}

	// A body that is not JSON cannot be authenticated, so it is not kept:
	// 400 tells an honest sender what is wrong and stores nothing.
	var af authFields
	if err := json.Unmarshal(body, &af); err != nil {
		in.reply(w, http.StatusBadRequest)
		return
	}
	if !in.authentic(af) {
		counters.authFailed.Add(1)
		in.log.Warn("callback_auth_failed", zap.String("remote_addr", r.RemoteAddr))
		in.reply(w, http.StatusUnauthorized)
		return
	}

	// The echoed credentials are the ingester's own secret: they are
	// checked, then kept out of the stream, so that reading
	// FALLBACK_CALLBACKS does not hand them out.
	if err := in.store(r.Context(), redactBody(body)); err != nil {
		counters.storeFailed.Add(1)
		in.log.Warn("callback_store_failed", zap.Error(err))
		w.Header().Set("Retry-After", "5")
		in.reply(w, http.StatusServiceUnavailable)
		return
	}
	counters.stored.Add(1)
	in.reply(w, http.StatusOK)
}

// authentic compares both credentials in constant time, and always both,
// so the answer's timing says nothing about which one was wrong.
func (in *Ingester) authentic(af authFields) bool {
	var user, pass string
	uok := json.Unmarshal(af.Username, &user) == nil
	pok := json.Unmarshal(af.Password, &pass) == nil
	// Hashing first makes the comparison length-independent too.
	gu, gp := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	u := subtle.ConstantTimeCompare(gu[:], in.user[:])
	p := subtle.ConstantTimeCompare(gp[:], in.pass[:])
	return uok && pok && u&p == 1
}

// store publishes stored (the body with its credentials redacted) and
// waits for JetStream's ack. The message id is its hash: a ThingSpace retry
// of a callback whose 200 was lost carries the same bytes and is stored
// once.
func (in *Ingester) store(ctx context.Context, stored []byte) error {
	if !in.bus.NC.IsConnected() {
		return fmt.Errorf("storing callback: %w", nats.ErrConnectionClosed)
	}
	ctx, cancel := context.WithTimeout(ctx, in.cfg.StoreTimeout)
	defer cancel()
	// The id hashes the stored bytes, not the received ones: a hash of
	// the body with its credentials would let a reader of the stream test
	// guesses of them. A resend is byte-identical, so it maps alike.
	sum := sha256.Sum256(stored)
	msg := nats.NewMsg(queue.CallbackSubject)
	msg.Data = stored
	msg.Header.Set(jetstream.MsgIDHeader, "cb-"+hex.EncodeToString(sum[:16]))
	if _, err := in.bus.JS.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("storing callback: %w", err)
	}
	return nil
}

func (in *Ingester) serveReady(w http.ResponseWriter, r *http.Request) {
	if !in.bus.NC.IsConnected() {
		writeText(w, http.StatusServiceUnavailable, "nats not connected")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
	defer cancel()
	for _, name := range []string{queue.StreamCallbacks, queue.StreamResults} {
		if _, err := in.bus.JS.Stream(ctx, name); err != nil {
			in.log.Warn("readiness_failed", zap.String("stream", name), zap.Error(err))
			writeText(w, http.StatusServiceUnavailable, "stream "+name+" unavailable")
			return
		}
	}
	writeText(w, http.StatusOK, "ready")
}

func (in *Ingester) serveJob(w http.ResponseWriter, r *http.Request) {
	st, err := in.tracker.Get(r.Context(), r.PathValue("jobId"))
	switch {
	case errors.Is(err, progress.ErrJobNotFound):
		writeText(w, http.StatusNotFound, "job not found")
		return
	case err != nil:
		in.log.Warn("job_status_failed", zap.Error(err))
		writeText(w, http.StatusServiceUnavailable, "job status unavailable")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(st)
}

// reply is the one place a callback answer is written and counted. The body
// is the status text only: it never carries internal details.
func (in *Ingester) reply(w http.ResponseWriter, code int) {
	countResponse(code)
	writeText(w, code, strings.ToLower(http.StatusText(code)))
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(text)+1))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, text+"\n")
}

// jsonContentType accepts JSON media types, and a missing Content-Type:
// ThingSpace does not document the header, and refusing a real callback
// over it would lose the callback after its retries.
func jsonContentType(ct string) bool {
	if strings.TrimSpace(ct) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" ||
		(strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// silentConns are the open connections that have not sent a byte yet.
type silentConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// track is the servers' ConnState hook.
func (s *silentConns) track(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st != http.StateNew {
		delete(s.m, c)
		return
	}
	if s.m == nil {
		s.m = map[net.Conn]struct{}{}
	}
	s.m[c] = struct{}{}
}

// closeAll closes every connection that is still silent.
func (s *silentConns) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.m {
		_ = c.Close()
		delete(s.m, c)
	}
}

func (in *Ingester) silentConns() int {
	in.silent.mu.Lock()
	defer in.silent.mu.Unlock()
	return len(in.silent.m)
}
