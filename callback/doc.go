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
package callback
