// Package model holds the wire types that cross process boundaries in
// tsfallback (jobs, devices, device identifiers, API requests, callbacks and
// result events) and the validation rules for each of them.
//
// Identifiers are strings end to end: nothing here parses one as a number,
// so leading zeros and every digit survive from the CSV file to ThingSpace
// and back into the result events.
package model
