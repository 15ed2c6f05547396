// Package ratelimit is tsfallback's budget of ThingSpace requests, shared by
// every worker process of a deployment.
//
// Each process keeps a local token bucket (golang.org/x/time/rate) set to
// its share of the deployment's rate: TSFB_RATE_RPS and TSFB_RATE_BURST
// divided by the number of busy processes. A process announces itself with
// a heartbeat key in the workers bucket and watches the others', so a new
// process takes its share within one heartbeat and a dead one gives its
// share back within the membership TTL. A process that has asked for no
// token for DefaultIdleAfter marks its heartbeat idle and the busy ones
// share its part; its next request marks it busy again at once, and it
// counts itself busy in its own share, so the sum stays within the budget
// but for the moment the others take to see it.
//
// A 429 answer pauses the whole deployment: the pause is written to the
// same bucket, every process watches it and stops taking tokens until it
// ends, then ramps its rate back up instead of sending a burst that would
// earn the next 429.
package ratelimit
