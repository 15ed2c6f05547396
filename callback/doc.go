// Package callback receives ThingSpace's asynchronous callbacks and turns
// them into device result events.
//
// Three roles live here. The Ingester is the HTTP endpoint ThingSpace posts
// to: it authenticates each callback by the credentials echoed in its body,
// stores the raw body in FALLBACK_CALLBACKS and answers 200 only once
// JetStream has acknowledged it. The Correlator consumes that stream in
// batches, decodes each callback leniently (Decode), finds the request it
// belongs to, and hands final outcomes to the progress tracker. The Sweeper
// gives devices whose callback never came a device.timed_out outcome.
//
// The callback port faces ThingSpace, so the internet. It serves the
// callback and the probes (/healthz, /readyz) to everyone; the operator's
// routes (/metrics, /v1/jobs/{jobId}) go to a separate listener when
// TSFB_CALLBACK_ADMIN_ADDR is set (Ingester.ServeAdmin), and otherwise are
// served on the callback port to TSFB_CALLBACK_ADMIN_ALLOW only (loopback
// by default). Every listener bounds its connections, and the server's
// timeouts cut off clients that trickle headers or hold their body back.
package callback
