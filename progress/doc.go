// Package progress is the one place where a device's final outcome is
// recorded, published and counted, so that callbacks, worker-side failures
// and the sweeper's time-outs complete a job the same way.
//
// Each final outcome is stored once in the outcomes bucket (a KV create that
// fails when the key exists), its event is published with its message id,
// the job's counts are applied once per job per batch under optimistic
// concurrency, and job.completed is published exactly once when every
// device of the job has an outcome. Every step is safe to repeat, so a
// caller that crashes anywhere simply redelivers the same batch.
package progress
