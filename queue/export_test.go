package queue

import "time"

// SetPublishAckTimeout shortens the ack timeout of buses opened after it,
// until the returned func restores it.
func SetPublishAckTimeout(d time.Duration) func() {
	old := publishAckTimeout
	publishAckTimeout = d
	return func() { publishAckTimeout = old }
}
