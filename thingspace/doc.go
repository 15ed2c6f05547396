// Package thingspace is the client of Verizon's ThingSpace Connectivity
// Management API that tsfallback needs: the OAuth2 client-credentials
// access token, the M2M session login, setfallbackattribute, callback
// registration and the v2 request status.
//
// Every call carries both tokens. The client caches the access token and
// renews it before it expires; it logs in once for all goroutines (single
// flight), logs in again only when ThingSpace says the session expired,
// and stops after a few failed logins in a row, because five lock the
// account. Failures come back as *Error, whose Kind tells a caller whether
// to slow down, retry, re-authenticate or give up on the request.
package thingspace
