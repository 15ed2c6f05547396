// Package e2e holds tsfallback's process-level tests: the real binary run
// as separate worker and callback processes against a standalone
// nats-server process and the ThingSpace simulator, killed and restarted
// the way a deployment is. Its tests build both binaries themselves, so
// nothing has to be installed; see harness_test.go.
//
// BenchmarkQuota measures how much of the API quota the workers use, for
// one and three worker processes; scripts/bench-quota runs it and prints
// the medians.
package e2e
