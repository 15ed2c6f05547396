// Package queue owns tsfallback's use of NATS: the connection (to external
// servers or to an embedded JetStream server), the streams and KV buckets of
// the design, created idempotently, the subject names, and the publishing
// helpers that every role shares.
package queue
