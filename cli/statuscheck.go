package cli

import (
	"context"

	"github.com/tsfallback/tsfallback/callback"
	"github.com/tsfallback/tsfallback/thingspace"
)

// statusChecker lets the sweeper ask ThingSpace through the client.
type statusChecker struct{ c *thingspace.Client }

func (s statusChecker) RequestStatus(ctx context.Context, account, requestID string) (callback.RequestStatus, error) {
	st, err := s.c.RequestStatus(ctx, account, requestID)
	if err != nil {
		return callback.RequestStatus{}, err
	}
	out := callback.RequestStatus{Status: st.Status}
	for _, sr := range st.SubRequests {
		out.Devices = append(out.Devices, callback.DeviceStatus{IDs: sr.IDs, Status: sr.Status})
	}
	return out, nil
}
