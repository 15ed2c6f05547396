// Package config reads tsfallback's configuration from TSFB_ environment
// variables with go-envconfig, lets every secret come from a file instead
// (TSFB_X_FILE), names the variable in every error, and renders the
// effective configuration for the start-up log with secrets redacted.
package config
