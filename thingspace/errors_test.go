package thingspace

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestDecodeError(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	date := now.Add(90 * time.Second).Format(http.TimeFormat)
	tests := []struct {
		name       string
		status     int
		retryAfter string
		body       string
		kind       Kind
		code       string
		rawCode    string
		message    string
		wait       time.Duration
		maybe      bool
	}{
		{name: "gateway fault string code", status: 401,
			body: `{"fault":{"code":"900901","message":"Invalid Credentials"}}`,
			kind: KindAuth, code: "900901", rawCode: "900901", message: "Invalid Credentials"},
		{name: "gateway fault numeric code", status: 401,
			body: `{"fault":{"code":900902,"message":"Missing Credentials"}}`,
			kind: KindAuth, code: "900902", rawCode: "900902", message: "Missing Credentials"},
		{name: "m2m session expired on 400", status: 400,
			body: `{"errorCode":"UnifiedWebService.REQUEST_FAILED.SessionToken.Expired","errorMessage":"x"}`,
			kind: KindAuth, code: "REQUEST_FAILED.SessionToken.Expired",
			rawCode: "UnifiedWebService.REQUEST_FAILED.SessionToken.Expired", message: "x"},
		{name: "m2m session format on 401", status: 401,
			body: `{"errorCode":"UnifiedWebService.REQUEST_FAILED.SessionToken.Format"}`,
			kind: KindAuth, code: "REQUEST_FAILED.SessionToken.Format",
			rawCode: "UnifiedWebService.REQUEST_FAILED.SessionToken.Format"},
		{name: "m2m input invalid", status: 400,
			body: `{"errorCode":"UnifiedWebService.INPUT_INVALID.DeviceId.Invalid","errorMessage":"bad eid"}`,
			kind: KindPermanent, code: "INPUT_INVALID.DeviceId.Invalid",
			rawCode: "UnifiedWebService.INPUT_INVALID.DeviceId.Invalid", message: "bad eid"},
		{name: "m2m code without service", status: 404,
			body: `{"errorCode":"NOT_FOUND"}`, kind: KindPermanent, code: "NOT_FOUND", rawCode: "NOT_FOUND"},
		{name: "oauth invalid client", status: 401,
			body: `{"error":"invalid_client","error_description":"Client authentication failed"}`,
			kind: KindAuth, code: "invalid_client", rawCode: "invalid_client",
			message: "Client authentication failed"},
		{name: "oauth invalid client on 400", status: 400,
			body: `{"error":"invalid_client"}`, kind: KindAuth, code: "invalid_client", rawCode: "invalid_client"},
		{name: "oauth other error", status: 400,
			body: `{"error":"unsupported_grant_type"}`, kind: KindPermanent,
			code: "unsupported_grant_type", rawCode: "unsupported_grant_type"},
		{name: "429 retry-after seconds", status: 429, retryAfter: "7",
			body: `{"errorCode":"UnifiedWebService.REQUEST_FAILED.RateLimit.Exceeded"}`,
			kind: KindRateLimited, code: "REQUEST_FAILED.RateLimit.Exceeded",
			rawCode: "UnifiedWebService.REQUEST_FAILED.RateLimit.Exceeded", wait: 7 * time.Second},
		{name: "429 retry-after date", status: 429, retryAfter: date, body: ``,
			kind: KindRateLimited, wait: 90 * time.Second},
		{name: "429 retry-after past date", status: 429,
			retryAfter: now.Add(-time.Minute).Format(http.TimeFormat), kind: KindRateLimited},
		{name: "429 retry-after garbage", status: 429, retryAfter: "soon", kind: KindRateLimited},
		{name: "503 slows down", status: 503, retryAfter: "2", body: `<html>busy</html>`,
			kind: KindRateLimited, wait: 2 * time.Second},
		{name: "500 transient", status: 500,
			body: `{"errorCode":"UnifiedWebService.REQUEST_FAILED.InternalError"}`, kind: KindTransient,
			code: "REQUEST_FAILED.InternalError", rawCode: "UnifiedWebService.REQUEST_FAILED.InternalError"},
		{name: "504 may have executed", status: 504, kind: KindTransient, maybe: true},
		{name: "404 permanent, no body", status: 404, kind: KindPermanent},
		{name: "403 gateway fault is auth", status: 403,
			body: `{"fault":{"code":"900908","message":"Resource forbidden"}}`,
			kind: KindAuth, code: "900908", rawCode: "900908", message: "Resource forbidden"},
		{name: "non-json body", status: 400, body: `oops`, kind: KindPermanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.retryAfter != "" {
				h.Set("Retry-After", tt.retryAfter)
			}
			e := decodeError("op", tt.status, h, []byte(tt.body), now)
			if e.Kind != tt.kind || e.Code != tt.code || e.RawCode != tt.rawCode ||
				e.Message != tt.message || e.RetryAfter != tt.wait || e.MaybeExecuted != tt.maybe ||
				e.Status != tt.status {
				t.Fatalf("got %+v", e)
			}
		})
	}
}

func TestErrorHelpers(t *testing.T) {
	rl := error(&Error{Op: "x", Kind: KindRateLimited, RetryAfter: time.Second})
	wrapped := errors.Join(errors.New("context"), rl)
	if d, ok := IsRateLimited(wrapped); !ok || d != time.Second {
		t.Fatalf("IsRateLimited = %v, %v", d, ok)
	}
	if IsTransient(rl) || IsPermanent(rl) || IsAuth(rl) || MaybeExecuted(rl) {
		t.Fatal("rate limited error matched another kind")
	}
	tr := &Error{Kind: KindTransient, MaybeExecuted: true, Err: ErrLoginStopped}
	if !IsTransient(tr) || !MaybeExecuted(tr) || !errors.Is(tr, ErrLoginStopped) {
		t.Fatal("transient helpers")
	}
	if IsTransient(errors.New("plain")) {
		t.Fatal("plain error is not transient")
	}
	msg := (&Error{Op: "login", Kind: KindAuth, Status: 400, RawCode: "A.B", Message: "m"}).Error()
	if !strings.Contains(msg, "login") || !strings.Contains(msg, "HTTP 400") || !strings.Contains(msg, "A.B") {
		t.Fatalf("Error() = %q", msg)
	}
}

func TestMessageTruncated(t *testing.T) {
	long := strings.Repeat("x", 5000)
	e := decodeError("op", 400, http.Header{}, []byte(`{"errorCode":"S.INPUT_INVALID.X","errorMessage":"`+long+`"}`), time.Now())
	if len(e.Message) > maxMessage+3 {
		t.Fatalf("message of %d bytes kept", len(e.Message))
	}
}
