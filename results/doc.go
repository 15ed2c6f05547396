// Package results is the consumer side of tsfallback: it reads result
// events from the FALLBACK_RESULTS stream as typed values, filtered by
// account, job and type, from the start of the stream or only new ones, and
// optionally through a named durable consumer so that a downstream program
// resumes where it stopped. The results command is built on it.
package results
