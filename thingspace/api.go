package thingspace

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/tsfallback/tsfallback/model"
)

// Callback service names ThingSpace knows.
const (
	// ServiceDeviceProfile carries the results of profile changes; it is
	// registered by default for setfallbackattribute results.
	ServiceDeviceProfile = "DeviceProfileService"
	ServiceCarrier       = "CarrierService"
)

// Registration is a callback registration for one service of an account.
// Password is sent when registering and never comes back from a listing.
type Registration struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// RequestStatus is the v2 status of a request.
type RequestStatus struct {
	RequestID   string       `json:"requestId"`
	Status      string       `json:"status"`
	SubRequests []SubRequest `json:"subRequests,omitempty"`
}

// SubRequest is the status of some devices of a request.
type SubRequest struct {
	IDs    []model.DeviceID `json:"ids"`
	Status string           `json:"status"`
}

func jsonBody(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding request: %w", err)
	}
	return b, nil
}

// SetFallbackAttribute submits one request and returns its requestId. The
// outcome of each device comes later by callback. On an error for which
// MaybeExecuted is true, ThingSpace may have accepted the request anyway.
func (c *Client) SetFallbackAttribute(ctx context.Context, req model.SetFallbackRequest) (string, error) {
	const op = "setfallbackattribute"
	if n := len(req.Devices); n == 0 || n > c.cfg.MaxDevices {
		return "", &Error{Op: op, Kind: KindPermanent, Err: fmt.Errorf("%w: %d devices, want 1 to %d",
			ErrTooManyDevices, n, c.cfg.MaxDevices)}
	}
	var out model.SetFallbackResponse
	err := c.call(ctx, op, http.MethodPost, "/m2m/v1/devices/profile/actions/setfallbackattribute",
		req, &out, true)
	if err != nil {
		return "", err
	}
	if out.RequestID == "" {
		return "", &Error{Op: op, Kind: KindTransient, Status: http.StatusOK, MaybeExecuted: true,
			Message: "answer carries no requestId"}
	}
	return out.RequestID, nil
}

// RegisterCallback registers (or replaces) the listener URL of a service.
func (c *Client) RegisterCallback(ctx context.Context, account string, r Registration) error {
	if r.Name == "" {
		r.Name = ServiceDeviceProfile
	}
	return c.call(ctx, "callbacks.register", http.MethodPost,
		"/m2m/v1/callbacks/"+url.PathEscape(account), r, nil, false)
}

// ListCallbacks lists the registrations of an account.
func (c *Client) ListCallbacks(ctx context.Context, account string) ([]Registration, error) {
	var out []Registration
	err := c.call(ctx, "callbacks.list", http.MethodGet,
		"/m2m/v1/callbacks/"+url.PathEscape(account), nil, &out, false)
	return out, err
}

// DeleteCallback removes the registration of a service.
func (c *Client) DeleteCallback(ctx context.Context, account, name string) error {
	return c.call(ctx, "callbacks.delete", http.MethodDelete,
		"/m2m/v1/callbacks/"+url.PathEscape(account)+"/name/"+url.PathEscape(name), nil, nil, false)
}

// RequestStatus asks the v2 status of a request. It is not documented that
// setfallbackattribute requests appear there: treat a 404 as "unknown".
func (c *Client) RequestStatus(ctx context.Context, account, requestID string) (RequestStatus, error) {
	var out RequestStatus
	err := c.call(ctx, "requeststatus", http.MethodGet, "/m2m/v2/accounts/"+url.PathEscape(account)+
		"/requests/"+url.PathEscape(requestID)+"/status", nil, &out, false)
	return out, err
}
