package thingspace

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kind is the class of a failed call: what the caller should do next.
type Kind int

// Kinds of failure.
const (
	// KindPermanent: ThingSpace refused this request (validation, 404,
	// other 4xx). Sending it again unchanged fails again.
	KindPermanent Kind = iota
	// KindTransient: a 5xx answer, a network error or a timeout. Retry with
	// back-off; see MaybeExecuted before counting it as not sent.
	KindTransient
	// KindRateLimited: 429 or 503, slow down for RetryAfter (0 = unknown).
	KindRateLimited
	// KindAuth: the access token, the session or the credentials were
	// refused even after the one renewal the client allows itself.
	KindAuth
)

func (k Kind) String() string {
	switch k {
	case KindPermanent:
		return "permanent"
	case KindTransient:
		return "transient"
	case KindRateLimited:
		return "rate limited"
	case KindAuth:
		return "auth"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Sentinels matched with errors.Is.
var (
	// ErrLoginStopped: the client gave up logging in after repeated
	// rejections and refuses every call until it is recreated, so that it
	// never locks the account.
	ErrLoginStopped = errors.New("thingspace: login stopped after repeated failures")
	// ErrTooManyDevices: the request holds more devices than allowed.
	ErrTooManyDevices = errors.New("thingspace: too many devices in one request")
)

// Error is a failed ThingSpace call. It never holds a request body, a token
// or a password.
type Error struct {
	// Op names the call, for example "setfallbackattribute".
	Op   string
	Kind Kind
	// Status is the HTTP status, 0 when no answer came.
	Status int
	// Code is ThingSpace's error code: the M2M errorCode without its
	// leading service name ("INPUT_INVALID.xxx"), the gateway fault code
	// ("900901") or the OAuth error ("invalid_client").
	Code string
	// RawCode is the code as received, service name included.
	RawCode string
	// Message is ThingSpace's message, for people; never branch on it.
	Message string
	// RetryAfter is the wait asked by a 429 or 503, 0 when not given.
	RetryAfter time.Duration
	// MaybeExecuted: the request may have reached ThingSpace and been
	// executed (a timeout or a dropped connection after it was sent, a
	// 504). Resending it may create a second request.
	MaybeExecuted bool
	// Err is the underlying cause (network error, context error, sentinel).
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("thingspace: ")
	if e.Op != "" {
		b.WriteString(e.Op + ": ")
	}
	b.WriteString(e.Kind.String())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.RawCode != "" {
		b.WriteString(" " + e.RawCode)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
	}
	if e.MaybeExecuted {
		b.WriteString(", may have been executed")
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// IsRateLimited reports whether err asks to slow down, and for how long
// (0 when ThingSpace did not say).
func IsRateLimited(err error) (retryAfter time.Duration, ok bool) {
	var e *Error
	if errors.As(err, &e) && e.Kind == KindRateLimited {
		return e.RetryAfter, true
	}
	return 0, false
}

// IsTransient reports whether err is worth retrying later with back-off.
func IsTransient(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindTransient
}

// IsPermanent reports whether ThingSpace refused the request itself, so
// resending it unchanged is pointless.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindPermanent
}

// IsAuth reports whether the credentials, token or session were refused.
// That is a problem of the deployment, not of the request.
func IsAuth(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindAuth
}

// MaybeExecuted reports whether the failed request may still have been
// executed by ThingSpace.
func MaybeExecuted(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.MaybeExecuted
}

// maxMessage bounds the server message kept in an error.
const maxMessage = 300

// errorBody holds the three error shapes ThingSpace answers with.
type errorBody struct {
	Fault *struct {
		Code        json.RawMessage `json:"code"`
		Message     string          `json:"message"`
		Description string          `json:"description"`
	} `json:"fault"`
	ErrorCode        string `json:"errorCode"`
	ErrorMessage     string `json:"errorMessage"`
	OAuthError       string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// sessionCodeSuffixes mark a session that must be renewed, whatever the
// HTTP status that carries them.
var sessionCodeSuffixes = []string{
	"SessionToken.Expired", "SessionToken.Invalid", "SessionToken.Format",
}

// isSessionCode reports whether the raw M2M code says the session token is
// no longer usable.
func isSessionCode(code string) bool {
	for _, s := range sessionCodeSuffixes {
		if strings.HasSuffix(code, s) {
			return true
		}
	}
	return false
}

// stripService drops the leading service name of an M2M error code:
// "UnifiedWebService.INPUT_INVALID.x" becomes "INPUT_INVALID.x".
func stripService(code string) string {
	if i := strings.IndexByte(code, '.'); i >= 0 {
		return code[i+1:]
	}
	return code
}

// decodeError classifies a non-2xx answer. now is used for Retry-After
// given as an HTTP date.
func decodeError(op string, status int, header http.Header, body []byte, now time.Time) *Error {
	e := &Error{Op: op, Status: status}
	var b errorBody
	if json.Unmarshal(body, &b) == nil {
		switch {
		case b.Fault != nil:
			e.RawCode = faultCode(b.Fault.Code)
			e.Code = e.RawCode
			e.Message = b.Fault.Message
			if e.Message == "" {
				e.Message = b.Fault.Description
			}
		case b.ErrorCode != "":
			e.RawCode = b.ErrorCode
			e.Code = stripService(b.ErrorCode)
			e.Message = b.ErrorMessage
		case b.OAuthError != "":
			e.RawCode = b.OAuthError
			e.Code = b.OAuthError
			e.Message = b.ErrorDescription
		}
	}
	if len(e.Message) > maxMessage {
		e.Message = e.Message[:maxMessage] + "..."
	}
	e.Kind = classify(status, e.RawCode, b.Fault != nil)
	if e.Kind == KindRateLimited {
		e.RetryAfter = parseRetryAfter(header.Get("Retry-After"), now)
	}
	// A gateway timeout means the back end may have run the request.
	e.MaybeExecuted = status == http.StatusGatewayTimeout
	return e
}

func classify(status int, rawCode string, gatewayFault bool) Kind {
	switch {
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		return KindRateLimited
	case status >= 500:
		return KindTransient
	case status == http.StatusUnauthorized || status == http.StatusForbidden && gatewayFault:
		return KindAuth
	case isSessionCode(rawCode):
		return KindAuth
	case rawCode == "invalid_client" || rawCode == "unauthorized_client":
		return KindAuth
	}
	return KindPermanent
}

// faultCode reads a gateway fault code given as a string or a number.
func faultCode(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return strings.Trim(string(raw), `"`)
}

// parseRetryAfter reads Retry-After as seconds or as an HTTP date; 0 when
// absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
