package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// luhnDigit is the Luhn check digit of body, written here rather than
// taken from package model: this test plays a system that has none of the
// project's code.
func luhnDigit(body string) byte {
	sum := 0
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if (len(body)-1-i)%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return byte('0' + (10-sum%10)%10)
}

// TestPlainNATSPublisher publishes a job the way another system would: a
// plain nats.go client, hand-written JSON, the subject and Nats-Msg-Id
// header of the README, and a core subscription to the job's result
// subject. The job is processed like any other.
func TestPlainNATSPublisher(t *testing.T) {
	st := startE2E(t, nil)
	nc, err := nats.Connect(st.env["TSFB_NATS_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	const devices = 5
	var devs []string
	for i := range devices {
		iccid := fmt.Sprintf("891480000077%07d", i)
		imei := fmt.Sprintf("3512340077%04d", i)
		devs = append(devs, fmt.Sprintf(`{"deviceIds":[{"kind":"iccid","id":"%s%c"},`+
			`{"kind":"imei","id":"%s%c"}]}`, iccid, luhnDigit(iccid), imei, luhnDigit(imei)))
	}
	const jobID = "plain-job-1"
	body := `{"jobId":"` + jobID + `","accountName":"` + testAccount + `","devices":[` +
		strings.Join(devs, ",") + `]}`

	// Subscribe first: a core subscription sees only what comes after it.
	sub, err := nc.SubscribeSync("fallback.results." + testAccount + "." + jobID)
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: "fallback.jobs." + testAccount, Data: []byte(body),
		Header: nats.Header{"Nats-Msg-Id": []string{jobID}}}
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatalf("publishing: %v", err)
	}
	if ack.Stream != "FALLBACK_JOBS" || ack.Duplicate {
		t.Fatalf("ack %+v, want a new message in FALLBACK_JOBS", ack)
	}
	// The same message again is a no-op.
	again := &nats.Msg{Subject: msg.Subject, Data: msg.Data, Header: msg.Header}
	if ack, err := js.PublishMsg(ctx, again); err != nil || !ack.Duplicate {
		t.Fatalf("re-publish: ack %+v, err %v; want a duplicate", ack, err)
	}

	type event struct {
		Type   string `json:"type"`
		JobID  string `json:"jobId"`
		Counts *struct {
			Devices, Succeeded, Failed, TimedOut int
		} `json:"counts"`
	}
	types := map[string]int{}
	for {
		m, err := sub.NextMsg(time.Until(deadline(ctx)))
		if err != nil {
			t.Fatalf("waiting for job.completed (seen %v): %v; serve stderr:\n%s", types, err,
				st.stderr)
		}
		var e event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatalf("event %s: %v", m.Data, err)
		}
		if e.JobID != jobID {
			t.Fatalf("event for job %q on the job's subject", e.JobID)
		}
		types[e.Type]++
		if e.Type != "job.completed" {
			continue
		}
		if c := e.Counts; c == nil || c.Devices != devices || c.Succeeded != devices {
			t.Fatalf("job.completed counts %+v, want %d devices succeeded", e.Counts, devices)
		}
		break
	}
	if types["job.accepted"] != 1 || types["device.succeeded"] != devices ||
		types["request.submitted"] < 1 {
		t.Errorf("events %v", types)
	}
	// The re-publish submitted nothing twice.
	if s := st.sim.Stats(); s.DevicesSubmitted != devices || s.DevicesResubmitted != 0 {
		t.Errorf("simulator saw %d devices submitted, %d resubmitted", s.DevicesSubmitted,
			s.DevicesResubmitted)
	}
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}
