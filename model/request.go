package model

// SetFallbackRequest is the body of ThingSpace's setfallbackattribute call.
type SetFallbackRequest struct {
	Devices     []Device `json:"devices"`
	AccountName string   `json:"accountName"`
	CarrierName string   `json:"carrierName,omitempty"`
}

// SetFallbackResponse is its success answer.
type SetFallbackResponse struct {
	RequestID string `json:"requestId"`
}

// RequestRecord is stored under a requestId so that the correlator can find
// the job a callback belongs to.
type RequestRecord struct {
	RequestID   string   `json:"requestId"`
	JobID       string   `json:"jobId"`
	AccountName string   `json:"accountName"`
	ReplyTo     string   `json:"replyTo,omitempty"`
	Chunk       int      `json:"chunk"`
	Devices     []Device `json:"devices"`
	// SubmittedAt is when ThingSpace accepted the request.
	SubmittedAt int64 `json:"submittedAt"`
}
