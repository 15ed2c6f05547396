package model

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func validJob(t *testing.T, n int) Job {
	t.Helper()
	r := rand.New(rand.NewPCG(5, 6))
	j := Job{JobID: "job-1", AccountName: "0000123456-00001"}
	for range n {
		j.Devices = append(j.Devices, RandomDevice(r))
	}
	return j
}

func TestDecodeJobValid(t *testing.T) {
	j := validJob(t, 3)
	data, _ := json.Marshal(j)
	got, err := DecodeJob(data, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got.JobID != "job-1" || len(got.Devices) != 3 {
		t.Fatalf("decoded %+v", got)
	}
}

func TestDecodeJobProblems(t *testing.T) {
	j := validJob(t, 2)
	good := j.Devices[0].DeviceIDs[0].ID
	tests := []struct {
		name string
		body string
		want []string // substrings of the problem texts, in order
	}{
		{"malformed", `{"accountName":`, []string{"body: malformed JSON"}},
		{"empty", ``, []string{"body: empty body"}},
		{"not object", `[1,2]`, []string{"body: "}},
		{"bad reply and body", `{"replyTo":"fallback.jobs.x","devices":3}`, []string{"body: ", "replyTo: invalid reply subject"}},
		{"bad id and body", `{"jobId":"a.b","accountName":"0000123456-00001","devices":3}`, []string{"body: ", "jobId: invalid job id"}},
		{"trailing", `{"accountName":"0000123456-00001","devices":[{"deviceIds":[{"kind":"eid","id":"` + good + `"}]}]} x`, []string{"trailing data"}},
		{"unknown field", `{"accountName":"0000123456-00001","reply_to":"x"}`, []string{"unknown field"}},
		{"number id", `{"accountName":"0000123456-00001","devices":[{"deviceIds":[{"kind":"eid","id":123}]}]}`, []string{"wrong JSON type"}},
		{"no devices", `{"accountName":"0000123456-00001","devices":[]}`, []string{"devices: no devices"}},
		{"bad account and job", `{"jobId":"a.b","accountName":"12","devices":[{"deviceIds":[{"kind":"eid","id":"` + good + `"}]}]}`,
			[]string{"jobId: invalid job id", "accountName: invalid account name"}},
		{"bad device", `{"accountName":"0000123456-00001","devices":[{"deviceIds":[{"kind":"eid","id":"` + good + `"}]},{"deviceIds":[{"kind":"mdn","id":"5551234567"},{"kind":"eid","id":"1"}]},{"deviceIds":[]}]}`,
			[]string{`devices[1].deviceIds[0](mdn): unknown identifier kind`, `devices[1].deviceIds[1](eid): wrong length`, `devices[2].deviceIds: no identifiers`}},
		{"device twice", `{"accountName":"0000123456-00001","devices":[{"deviceIds":[{"kind":"eid","id":"` + good + `"}]},{"deviceIds":[{"kind":"eid","id":"` + good + `"}]}]}`,
			[]string{"devices[1].deviceIds[0](eid): also in devices[0]"}},
		{"missing kind", `{"accountName":"0000123456-00001","devices":[{"deviceIds":[{"id":"` + good + `"}]}]}`, []string{"kind is missing"}},
		{"bad replyTo", `{"accountName":"0000123456-00001","replyTo":"a..b","devices":[{"deviceIds":[{"kind":"eid","id":"` + good + `"}]}]}`, []string{"replyTo"}},
	}
	for _, reply := range []string{"fallback.jobs.0000123456-00001", "fallback.callbacks.thingspace",
		"$JS.API.STREAM.DELETE.FALLBACK_RESULTS", "foo.*", "foo.>", "a..b", "a b"} {
		tests = append(tests, struct {
			name string
			body string
			want []string
		}{"reply " + reply, `{"accountName":"0000123456-00001","replyTo":"` + reply + `","devices":[{"deviceIds":[{"kind":"eid","id":"` + good + `"}]}]}`,
			[]string{"replyTo: invalid reply subject"}})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeJob([]byte(tt.body), 0)
			var inv *InvalidJobError
			if !errors.As(err, &inv) || !errors.Is(err, ErrInvalidJob) {
				t.Fatalf("got %v, want *InvalidJobError", err)
			}
			if len(inv.Problems) != len(tt.want) {
				t.Fatalf("problems %v, want %d", inv.Problems, len(tt.want))
			}
			for i, w := range tt.want {
				if s := inv.Problems[i].String(); !strings.Contains(s, w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, s, w)
				}
			}
		})
	}
}

func TestValidateTooManyDevices(t *testing.T) {
	j := validJob(t, 11)
	err := j.Validate(10)
	if err == nil || !strings.Contains(err.Error(), "11 devices, at most 10") {
		t.Fatalf("got %v", err)
	}
}

func FuzzDecodeJob(f *testing.F) {
	j := validJob(&testing.T{}, 2)
	data, _ := json.Marshal(j)
	f.Add(data)
	f.Add([]byte(`{"accountName":"0000123456-00001","devices":[{"deviceIds":[{"kind":"eid","id":"1"}]}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := DecodeJob(data, 0)
		if err == nil {
			// A job that passed must pass again after a round trip.
			again, _ := json.Marshal(got)
			if _, err := DecodeJob(again, 0); err != nil {
				t.Fatalf("round trip of a valid job failed: %v", err)
			}
		}
	})
}
