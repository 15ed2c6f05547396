package model

// Callback statuses. ThingSpace sends SUCCESS or FAILED as the final word;
// anything else (for example a warning while a back end is slow) is a
// non-final status that does not finish the device.
const (
	StatusSuccess = "SUCCESS"
	StatusFailed  = "FAILED"
)

// CallbackBody is the callback ThingSpace posts for one device, in the
// shape of the documented example. The simulator sends this shape (and, on
// demand, variants of it); the correlator decodes every variant leniently
// into a Callback.
type CallbackBody struct {
	RequestID            string          `json:"requestId"`
	DeviceIDs            []DeviceID      `json:"deviceIds,omitempty"`
	DeviceResponse       *DeviceResponse `json:"deviceResponse,omitempty"`
	FaultResponse        *FaultResponse  `json:"faultResponse,omitempty"`
	Status               string          `json:"status"`
	CallbackCount        int             `json:"callbackCount"`
	MaxCallbackThreshold int             `json:"maxCallbackThreshold"`
	Username             string          `json:"username"`
	Password             string          `json:"password"`
}

// DeviceResponse holds the device part of a callback.
type DeviceResponse struct {
	DeviceProfileResponse *DeviceProfileResponse `json:"deviceProfileResponse,omitempty"`
}

// DeviceProfileResponse names the device the callback is about.
type DeviceProfileResponse struct {
	DeviceIdentifierCollection []DeviceID `json:"deviceIdentifierCollection,omitempty"`
}

// FaultResponse is ThingSpace's failure detail for one device.
type FaultResponse struct {
	FaultCode   string `json:"faultcode"`
	FaultString string `json:"faultstring"`
}

// Callback is a decoded callback, whatever shape it arrived in.
type Callback struct {
	RequestID string
	// Device holds the identifiers the callback names, kinds in lower case.
	Device               Device
	Status               string
	Fault                *Fault
	CallbackCount        int
	MaxCallbackThreshold int
}

// Final reports whether the status ends the device.
func (c Callback) Final() bool {
	return c.Status == StatusSuccess || c.Status == StatusFailed
}
