// Package schema publishes tsfallback's public contracts, the job message
// and the result event, as JSON Schema (draft 2020-12) files, so that
// producers and consumers written in other languages can validate a message
// before they publish it or rely on it.
//
// The files live next to this package (job.schema.json, event.schema.json)
// for anyone to copy, and are embedded here so that Go tools can serve or
// print them. The tests prove that the schemas and package model agree;
// where JSON Schema cannot follow model (check digits, the configured
// device limit, case-insensitive field names) the schema's description
// says so.
package schema

import _ "embed"

// File names of the schemas, also the last segment of their $id.
const (
	JobFile   = "job.schema.json"
	EventFile = "event.schema.json"
)

// Job is the JSON Schema of the job message producers publish on
// fallback.jobs.<accountName>. Callers must not modify it.
//
//go:embed job.schema.json
var Job []byte

// Event is the JSON Schema of a result event published on
// fallback.results.<accountName>.<jobId>. Callers must not modify it.
//
//go:embed event.schema.json
var Event []byte
