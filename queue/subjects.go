package queue

// Stream names.
const (
	StreamJobs      = "FALLBACK_JOBS"
	StreamCallbacks = "FALLBACK_CALLBACKS"
	StreamResults   = "FALLBACK_RESULTS"
	StreamDead      = "FALLBACK_DEAD"
)

// KV bucket names.
const (
	// BucketRequests maps a requestId to its model.RequestRecord.
	BucketRequests = "fallback_requests"
	// BucketJobs holds each job's progress.
	BucketJobs = "fallback_jobs"
	// BucketChunks is the worker's submit journal: "<jobId>.<chunk>".
	BucketChunks = "fallback_chunks"
	// BucketOutcomes holds each device's final outcome:
	// "<jobId>.<deviceKey>", created once.
	BucketOutcomes = "fallback_outcomes"
	// BucketWorkers holds live worker processes, with a TTL.
	BucketWorkers = "fallback_workers"
	// BucketAuth holds the deployment-wide count of rejected ThingSpace
	// logins, per username.
	BucketAuth = "fallback_auth"
	// BucketRuns is the importer's manifest: job id -> digest of the job
	// as published, so a run id reused for other input is refused.
	BucketRuns = "fallback_runs"
)

// Subjects.
const (
	JobsPrefix      = "fallback.jobs"
	ResultsPrefix   = "fallback.results"
	CallbackSubject = "fallback.callbacks.thingspace"
	DeadPrefix      = "fallback.dead"
)

// Dead-letter kinds.
const (
	DeadJobs      = "jobs"
	DeadCallbacks = "callbacks"
)

// JobSubject is where jobs of the account are published.
func JobSubject(account string) string { return JobsPrefix + "." + account }

// ResultSubject is where the events of one job are published.
func ResultSubject(account, jobID string) string {
	return ResultsPrefix + "." + account + "." + jobID
}

// DeadSubject is where dead letters of a kind go.
func DeadSubject(kind string) string { return DeadPrefix + "." + kind }
