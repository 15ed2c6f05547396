// Package worker consumes fallback jobs from the FALLBACK_JOBS stream and
// submits them to ThingSpace: it validates each job, splits it into
// requests of at most TSFB_CHUNK_SIZE devices, waits on the deployment's
// rate limit, posts each request, records its requestId for the callback
// correlator and publishes the job's result events.
//
// The rules that make a job survive crashes and redeliveries:
//
//   - A job message is acknowledged only after every chunk has a recorded
//     requestId or a final failure.
//   - After each accepted request the worker writes the RequestRecord (the
//     correlator waits for it), then the chunk's entry in the submit
//     journal, then the request.submitted event, then marks the entry
//     published. A redelivered job skips the chunks the journal knows; an
//     entry not marked has its event published again only when the
//     results stream would drop the repeat or does not have the event, so
//     a redelivery after the duplicate window does not repeat it.
//   - job.accepted follows the same rule with the job's acceptance record
//     ("<jobId>.accepted" in the chunks bucket), created before the first
//     request with a digest of the job's devices. Journal entries carry
//     their chunk's digest: a job id used again for other devices is
//     rejected (job.rejected, dead letter) before anything is submitted.
//   - The only gap left is a crash between ThingSpace accepting a request
//     and the journal write: that chunk is submitted again on redelivery.
//     A retry after an ambiguous failure (a timeout after the request was
//     sent) is marked as a possible duplicate and counted.
//   - While a job waits on the rate limit or on ThingSpace, its message is
//     kept alive with in-progress acknowledgements, so it is not delivered
//     to a second worker.
//   - A process holds only the jobs its share of the rate budget can start
//     within half the ack wait (at least one, at most
//     TSFB_WORKER_CONCURRENCY); the rest stay in the stream for the other
//     processes. A pause longer than two minutes hands jobs back with a
//     delay instead of holding them.
//   - A consumer that would overlap another on the work-queue stream stops
//     start-up with the server's error. Streams, buckets and the consumer
//     lost while running are re-created, and logged, without a restart.
package worker
