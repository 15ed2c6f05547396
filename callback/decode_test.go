package callback

import (
	"errors"
	"reflect"
	"testing"

	"github.com/tsfallback/tsfallback/model"
)

const (
	eid   = "89049032000000000000000000000059"
	iccid = "89148000000000000019"
)

func TestDecodeShapes(t *testing.T) {
	tests := []struct {
		name string
		body string
		want model.Callback
		err  error
	}{{
		name: "documented failure",
		body: `{"requestId":"r-1","deviceIds":[{"kind":"eid","id":"` + eid + `"}],
			"deviceResponse":{"deviceProfileResponse":{"deviceIdentifierCollection":[{"kind":"iccid","id":"` + iccid + `"}]}},
			"faultResponse":{"faultcode":"SVC1000","faultstring":"no profile"},
			"status":"FAILED","callbackCount":1,"maxCallbackThreshold":4,"username":"u","password":"p"}`,
		want: model.Callback{RequestID: "r-1", Status: "FAILED",
			Device: model.Device{DeviceIDs: []model.DeviceID{{Kind: "eid", ID: eid}, {Kind: "iccid", ID: iccid}}},
			Fault:  &model.Fault{Code: "SVC1000", Message: "no profile"}, CallbackCount: 1,
			MaxCallbackThreshold: 4},
	}, {
		name: "key casing, kind casing, counters as strings, collection as object",
		body: `{"RequestID":"r-2","DeviceResponse":{"DeviceProfileResponse":{"DeviceIdentifierCollection":
			{"Kind":"EID","Id":"` + eid + `"}}},"Status":"success","CallbackCount":"2","MaxCallbackThreshold":"4"}`,
		want: model.Callback{RequestID: "r-2", Status: "SUCCESS", CallbackCount: 2, MaxCallbackThreshold: 4,
			Device: model.Device{DeviceIDs: []model.DeviceID{{Kind: "eid", ID: eid}}}},
	}, {
		name: "identifiers as JSON numbers keep every digit",
		body: `{"request_id":"r-3","deviceIds":[{"kind":"iccid","id":` + iccid + `}],"status":"SUCCESS"}`,
		want: model.Callback{RequestID: "r-3", Status: "SUCCESS",
			Device: model.Device{DeviceIDs: []model.DeviceID{{Kind: "iccid", ID: iccid}}}},
	}, {
		name: "collection members holding deviceIds",
		body: `{"requestId":"r-4","deviceResponse":{"deviceProfileResponse":{"deviceIdentifierCollection":
			[{"deviceIds":[{"kind":"Imei","id":"356938035643809"}]}]}},"status":"WARNING"}`,
		want: model.Callback{RequestID: "r-4", Status: "WARNING",
			Device: model.Device{DeviceIDs: []model.DeviceID{{Kind: "imei", ID: "356938035643809"}}}},
	}, {
		name: "fault without status is a failure",
		body: `{"requestId":"r-5","deviceIds":{"kind":"eid","id":"` + eid + `"},"faultResponse":{"faultcode":7}}`,
		want: model.Callback{RequestID: "r-5", Status: "FAILED",
			Device: model.Device{DeviceIDs: []model.DeviceID{{Kind: "eid", ID: eid}}},
			Fault:  &model.Fault{Code: "7"}},
	}, {
		name: "success naming no device",
		body: `{"requestId":"r-6","status":"SUCCESS","deviceIds":[]}`,
		err:  ErrNoDevice,
	}, {
		name: "no request id",
		body: `{"deviceIds":[{"kind":"eid","id":"1"}],"status":"SUCCESS"}`,
		err:  ErrNoRequestID,
	}, {
		name: "no status",
		body: `{"requestId":"r-7","deviceIds":[{"kind":"eid","id":"1"}]}`,
		err:  ErrNoStatus,
	}, {
		name: "not an object",
		body: `[1,2]`,
		err:  ErrMalformed,
	}, {
		name: "trailing data",
		body: `{"requestId":"r"} {}`,
		err:  ErrMalformed,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.body))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"requestId":"r","deviceIds":[{"kind":"eid","id":"1"}],"status":"SUCCESS"}`))
	f.Add([]byte(`{"RequestId":1,"deviceResponse":{"deviceProfileResponse":{"deviceIdentifierCollection":{"kind":"ICCID","id":1e400}}},"status":"failed","faultResponse":{"faultcode":"x"}}`))
	f.Add([]byte(`{"requestId":"r","deviceIds":[[[{"deviceIds":{"kind":"eid","id":"2"}}]]],"callbackCount":"-1"}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		cb, err := Decode(body)
		if err != nil {
			return
		}
		if cb.RequestID == "" || len(cb.Device.DeviceIDs) == 0 || cb.Status == "" {
			t.Fatalf("decoded an unattributable callback: %+v", cb)
		}
		if cb.Status == model.StatusFailed && cb.Fault == nil {
			t.Fatal("failure without a fault")
		}
	})
}
