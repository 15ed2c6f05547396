package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue/queuetest"
)

const otherAccount = "0000999999-00001"

// eventLines decodes the command's output, one JSON event a line.
func eventLines(t *testing.T, out string) []model.Event {
	t.Helper()
	var es []model.Event
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var e model.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("output line %q is not an event: %v", l, err)
		}
		es = append(es, e)
	}
	return es
}

func jobIDs(es []model.Event) string {
	var ids []string
	for _, e := range es {
		ids = append(ids, e.Type+"/"+e.JobID)
	}
	return strings.Join(ids, " ")
}

func TestResultsCommand(t *testing.T) {
	url := queuetest.Server(t)
	env := newNatsEnv(url)
	ctx := context.Background()

	// An empty stream: the command ends at once with nothing printed.
	start := time.Now()
	code, out, errOut := env.run(ctx, "", "results")
	if code != ExitOK || out != "" {
		t.Fatalf("results on an empty stream: exit %d, %q %q", code, out, errOut)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("results on an empty stream took %s", d)
	}

	bus := queuetest.Open(t, url)
	publish := func(es ...model.Event) {
		t.Helper()
		for _, e := range es {
			if err := bus.PublishEvent(ctx, e, ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(
		model.Event{Type: model.EventJobAccepted, JobID: "j1", AccountName: testAccount},
		model.Event{Type: model.EventJobAccepted, JobID: "j2", AccountName: testAccount},
		model.Event{Type: model.EventJobCompleted, JobID: "j1", AccountName: testAccount,
			Counts: &model.Counts{Devices: 1, Succeeded: 1}},
		model.Event{Type: model.EventJobAccepted, JobID: "j3", AccountName: otherAccount},
	)

	for _, tt := range []struct {
		args []string
		want string
	}{
		{nil, "job.accepted/j1 job.accepted/j2 job.completed/j1 job.accepted/j3"},
		{[]string{"--job", "j1"}, "job.accepted/j1 job.completed/j1"},
		{[]string{"--account", otherAccount}, "job.accepted/j3"},
		{[]string{"--account", testAccount, "--job", "j2"}, "job.accepted/j2"},
		{[]string{"--type", "job.completed,device.failed"}, "job.completed/j1"},
		{[]string{"--new"}, ""},
	} {
		code, out, errOut := env.run(ctx, "", append([]string{"results"}, tt.args...)...)
		if code != ExitOK {
			t.Errorf("results %v: exit %d: %s", tt.args, code, errOut)
			continue
		}
		if got := jobIDs(eventLines(t, out)); got != tt.want {
			t.Errorf("results %v:\n got %s\nwant %s", tt.args, got, tt.want)
		}
	}

	// A durable reader resumes after what it printed.
	_, out, _ = env.run(ctx, "", "results", "--durable", "downstream", "--account", testAccount)
	if got := jobIDs(eventLines(t, out)); got != "job.accepted/j1 job.accepted/j2 job.completed/j1" {
		t.Fatalf("durable first read: %s", got)
	}
	publish(model.Event{Type: model.EventJobAccepted, JobID: "j4", AccountName: testAccount})
	_, out, _ = env.run(ctx, "", "results", "--durable", "downstream", "--account", testAccount)
	if got := jobIDs(eventLines(t, out)); got != "job.accepted/j4" {
		t.Fatalf("durable resume: %s", got)
	}
	_, out, _ = env.run(ctx, "", "results", "--durable", "downstream", "--account", testAccount)
	if out != "" {
		t.Fatalf("durable read with nothing new: %q", out)
	}
}

// TestResultsFollow follows the stream, sees an event published meanwhile,
// and ends cleanly when its context ends, as on SIGINT.
func TestResultsFollow(t *testing.T) {
	url := queuetest.Server(t)
	bus := queuetest.Open(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, errOut := &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"results", "--follow", "--job", "f1"},
			Env{Stdin: strings.NewReader(""), Stdout: out, Stderr: errOut,
				Lookup: newNatsEnv(url).lookup})
	}()
	e := model.Event{Type: model.EventJobAccepted, JobID: "f1", AccountName: testAccount}
	if err := bus.PublishEvent(ctx, e, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the followed event", func() bool {
		return strings.Contains(out.String(), `"jobId":"f1"`)
	})
	cancel()
	select {
	case code := <-done:
		if code != ExitOK || errOut.String() != "" {
			t.Fatalf("results --follow ended with %d: %s", code, errOut)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("results --follow did not end after its context was canceled")
	}
	if n := len(eventLines(t, out.String())); n != 1 {
		t.Errorf("%d events printed, want 1", n)
	}
}

func TestResultsUsage(t *testing.T) {
	env := newNatsEnv("nats://127.0.0.1:1") // never reached: the flags are wrong
	for _, tt := range []struct {
		args []string
		text string
	}{
		{[]string{"results", "--type", "bogus"}, `unknown event type "bogus"`},
		{[]string{"results", "--account", "12"}, "--account"},
		{[]string{"results", "--job", "a.b"}, "--job"},
		{[]string{"results", "--durable", "x y"}, "--durable"},
		{[]string{"results", "extra"}, `unexpected argument "extra"`},
	} {
		code, _, errOut := env.run(context.Background(), "", tt.args...)
		if code != ExitUsage || !strings.Contains(errOut, tt.text) {
			t.Errorf("%v: exit %d, stderr %q, want %d with %q", tt.args, code, errOut, ExitUsage,
				tt.text)
		}
	}
}
