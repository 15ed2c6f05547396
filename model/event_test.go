package model

import "testing"

func TestEventMsgID(t *testing.T) {
	d := &Device{DeviceIDs: []DeviceID{{Kind: KindEID, ID: "1"}}}
	a := Event{Type: EventDeviceSucceeded, JobID: "j", RequestID: "r", Device: d}
	b := a
	b.At = b.At.Add(1)
	if a.MsgID() != b.MsgID() {
		t.Fatal("time must not change the message id")
	}
	c := a
	c.Type = EventDeviceFailed
	if a.MsgID() == c.MsgID() {
		t.Fatal("type must change the message id")
	}
	s1 := Event{Type: EventDeviceStatus, JobID: "j", RequestID: "r", Device: d, Status: "WARNING"}
	s2 := s1
	s2.Status = "PENDING"
	if s1.MsgID() == s2.MsgID() {
		t.Fatal("status must change a device.status message id")
	}
}
