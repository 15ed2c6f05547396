// Package cli holds the logic of every tsfallback command. Each command
// takes its arguments, standard streams and environment through Env, so
// tests run the commands in-process exactly as a user would.
package cli
