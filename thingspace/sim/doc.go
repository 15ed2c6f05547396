// Package sim is a ThingSpace simulator for tests, the demo and load runs.
// It serves the paths the client uses, with the documented request and
// answer shapes: the OAuth2 token (one hour, the same token asked again
// within it), the M2M session (idle expiry, lockout after five failed
// logins), setfallbackattribute with ThingSpace's validation, callback
// registration and the v2 request status. It sends one asynchronous
// callback per device to the account's registered listener, retried when
// not answered 2xx, from a fixed pool of senders.
//
// Every inferred behaviour and every fault (5xx answers, latency, requests
// executed whose answer never comes, failed devices, duplicate, early,
// reordered and non-final callbacks, other callback shapes) is a Config
// knob, off by default. GET /_sim/stats returns the counters as JSON.
package sim
