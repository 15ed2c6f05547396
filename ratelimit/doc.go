// Package ratelimit is tsfallback's budget of ThingSpace requests, shared by
// every worker process of a deployment.
//
// Each process keeps a local token bucket (golang.org/x/time/rate) set to
// its share of the deployment's rate: TSFB_RATE_RPS and TSFB_RATE_BURST
// divided by the number of live processes. A process announces itself with
// a heartbeat key in the workers bucket and watches the others', so a new
// process takes its share within one heartbeat and a dead one gives its
// share back within the membership TTL.
//
// A 429 answer pauses the whole deployment: the pause is written to the
// same bucket, every process watches it and stops taking tokens until it
// ends, then ramps its rate back up instead of sending a burst that would
// earn the next 429.
package ratelimit
