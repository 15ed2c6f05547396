package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tsfallback/tsfallback/model"
)

const account = "0000123456-00001"

// eventTypes lists every model.Event* constant. TestEventTypesMatchModel
// checks it against the model package's source, so a new constant fails
// the test until the schema's enum and this list know it.
var eventTypes = []string{
	model.EventJobAccepted,
	model.EventJobRejected,
	model.EventJobFailed,
	model.EventRequestSubmitted,
	model.EventDeviceSucceeded,
	model.EventDeviceFailed,
	model.EventDeviceTimedOut,
	model.EventDeviceUnmatched,
	model.EventDeviceStatus,
	model.EventJobCompleted,
}

// compiled holds both schemas, compiled once: compiling is the slow part.
var compiled = sync.OnceValues(func() ([2]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	// Formats are annotations in draft 2020-12 unless asserted; "at" must
	// really be a date-time.
	c.AssertFormat()
	var out [2]*jsonschema.Schema
	for i, f := range []struct {
		name string
		data []byte
	}{{JobFile, Job}, {EventFile, Event}} {
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(f.data))
		if err != nil {
			return out, fmt.Errorf("parsing %s: %w", f.name, err)
		}
		if err := c.AddResource(f.name, doc); err != nil {
			return out, fmt.Errorf("adding %s: %w", f.name, err)
		}
		if out[i], err = c.Compile(f.name); err != nil {
			return out, fmt.Errorf("compiling %s: %w", f.name, err)
		}
	}
	return out, nil
})

func schemas(t *testing.T) (job, event *jsonschema.Schema) {
	t.Helper()
	s, err := compiled()
	if err != nil {
		t.Fatal(err)
	}
	return s[0], s[1]
}

func validate(t *testing.T, sch *jsonschema.Schema, data []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(v)
}

// doc returns a schema file as a generic JSON tree, for the tests that
// compare its structure with the Go types.
func doc(t *testing.T, data []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// at walks a JSON tree along keys.
func at(t *testing.T, m map[string]any, keys ...string) any {
	t.Helper()
	var v any = m
	for _, k := range keys {
		obj, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("%s: not an object before %q", strings.Join(keys, "/"), k)
		}
		if v, ok = obj[k]; !ok {
			t.Fatalf("%s: no %q", strings.Join(keys, "/"), k)
		}
	}
	return v
}

func strs(t *testing.T, v any) []string {
	t.Helper()
	arr, ok := v.([]any)
	if !ok {
		t.Fatalf("%v is not an array", v)
	}
	out := make([]string, len(arr))
	for i, x := range arr {
		out[i] = x.(string)
	}
	sort.Strings(out)
	return out
}

func keys(t *testing.T, v any) []string {
	t.Helper()
	obj, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%v is not an object", v)
	}
	out := make([]string, 0, len(obj))
	for k := range obj {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// jsonNames returns the JSON member names of a struct type.
func jsonNames(typ reflect.Type) []string {
	var out []string
	for f := range typ.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

func TestSchemasCompile(t *testing.T) {
	schemas(t)
	for name, data := range map[string][]byte{JobFile: Job, EventFile: Event} {
		id, _ := doc(t, data)["$id"].(string)
		if !strings.HasSuffix(id, "/"+name) {
			t.Errorf("%s: $id %q does not end with its file name", name, id)
		}
		disk, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(disk, data) {
			t.Errorf("%s: embedded copy differs from the file", name)
		}
	}
}

func TestJobSchemaMatchesModelShape(t *testing.T) {
	m := doc(t, Job)
	checks := []struct {
		path []string
		typ  reflect.Type
	}{
		{[]string{"properties"}, reflect.TypeFor[model.Job]()},
		{[]string{"$defs", "device", "properties"}, reflect.TypeFor[model.Device]()},
		{[]string{"$defs", "deviceId", "properties"}, reflect.TypeFor[model.DeviceID]()},
	}
	for _, c := range checks {
		if got, want := keys(t, at(t, m, c.path...)), jsonNames(c.typ); !slices.Equal(got, want) {
			t.Errorf("%s: schema has %v, %s has %v", strings.Join(c.path, "/"), got, c.typ, want)
		}
	}
	kinds := slices.Sorted(slices.Values(model.JobKinds))
	if got := strs(t, at(t, m, "$defs", "deviceId", "properties", "kind", "enum")); !slices.Equal(got, kinds) {
		t.Errorf("kind enum %v, model.JobKinds %v", got, kinds)
	}
	if got := at(t, m, "properties", "devices", "maxItems"); got != float64(model.DefaultMaxJobDevices) {
		t.Errorf("devices maxItems %v, model.DefaultMaxJobDevices %d", got, model.DefaultMaxJobDevices)
	}
	if got := at(t, m, "$defs", "device", "properties", "deviceIds", "maxItems"); got != float64(model.MaxDeviceIDs) {
		t.Errorf("deviceIds maxItems %v, model.MaxDeviceIDs %d", got, model.MaxDeviceIDs)
	}
	if got := at(t, m, "properties", "jobId", "pattern"); got != "^[A-Za-z0-9_-]{1,"+strconv.Itoa(model.MaxJobIDLen)+"}$" {
		t.Errorf("jobId pattern %v does not use model.MaxJobIDLen %d", got, model.MaxJobIDLen)
	}
}

func TestEventSchemaMatchesModelShape(t *testing.T) {
	m := doc(t, Event)
	checks := []struct {
		path []string
		typ  reflect.Type
	}{
		{[]string{"properties"}, reflect.TypeFor[model.Event]()},
		{[]string{"properties", "fault", "properties"}, reflect.TypeFor[model.Fault]()},
		{[]string{"properties", "counts", "properties"}, reflect.TypeFor[model.Counts]()},
		{[]string{"properties", "problems", "items", "properties"}, reflect.TypeFor[model.Problem]()},
		{[]string{"$defs", "device", "properties"}, reflect.TypeFor[model.Device]()},
		{[]string{"$defs", "device", "properties", "deviceIds", "items", "properties"},
			reflect.TypeFor[model.DeviceID]()},
	}
	for _, c := range checks {
		if got, want := keys(t, at(t, m, c.path...)), jsonNames(c.typ); !slices.Equal(got, want) {
			t.Errorf("%s: schema has %v, %s has %v", strings.Join(c.path, "/"), got, c.typ, want)
		}
	}
}

// TestEventTypesMatchModel reads the model package's source for every
// Event* string constant, so that a type added there cannot be missing
// from the schema.
func TestEventTypesMatchModel(t *testing.T) {
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join("..", "model", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var fromSource []string
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, id := range vs.Names {
					if !strings.HasPrefix(id.Name, "Event") || i >= len(vs.Values) {
						continue
					}
					if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, _ := strconv.Unquote(lit.Value)
						fromSource = append(fromSource, v)
					}
				}
			}
		}
	}
	sort.Strings(fromSource)
	listed := slices.Sorted(slices.Values(eventTypes))
	if !slices.Equal(fromSource, listed) {
		t.Fatalf("model declares %v, this test lists %v", fromSource, listed)
	}

	m := doc(t, Event)
	if got := strs(t, at(t, m, "properties", "type", "enum")); !slices.Equal(got, listed) {
		t.Errorf("schema type enum %v, model %v", got, listed)
	}
	// The conditional requirement on device.* events must name every one.
	var devTypes []string
	for _, typ := range listed {
		if strings.HasPrefix(typ, "device.") {
			devTypes = append(devTypes, typ)
		}
	}
	if got := strs(t, at(t, m, "$defs", "typeDevice", "properties", "type", "enum")); !slices.Equal(got, devTypes) {
		t.Errorf("typeDevice enum %v, model's device.* types %v", got, devTypes)
	}
}

// randomICCID19 returns a valid 19-digit ICCID; model generates only 20.
func randomICCID19(r *rand.Rand) string {
	b := []byte("8914800")
	for len(b) < 18 {
		b = append(b, byte('0'+r.IntN(10)))
	}
	return string(b) + string(model.LuhnDigit(string(b)))
}

func TestValidJobsPassBoth(t *testing.T) {
	jobSchema, _ := schemas(t)
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 7, 100, model.DefaultMaxJobDevices} {
		for _, variant := range []string{"bare", "jobId", "replyTo", "both"} {
			j := model.Job{AccountName: account}
			if variant == "jobId" || variant == "both" {
				j.JobID = fmt.Sprintf("Job_%d-%s", n, variant)
			}
			if variant == "replyTo" || variant == "both" {
				j.ReplyTo = "_INBOX.replies.a1b2c3"
			}
			for k := range n {
				d := model.RandomDevice(r)
				// Vary which identifiers a device carries and in what
				// order, keeping at least one.
				switch k % 5 {
				case 1:
					d.DeviceIDs = d.DeviceIDs[:1]
				case 2:
					d.DeviceIDs = []model.DeviceID{d.DeviceIDs[2], d.DeviceIDs[1]}
				case 3:
					d.DeviceIDs = []model.DeviceID{{Kind: model.KindICCID, ID: randomICCID19(r)}}
				case 4:
					d.DeviceIDs = d.DeviceIDs[2:]
				}
				j.Devices = append(j.Devices, d)
			}
			data, err := json.Marshal(j)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := model.DecodeJob(data, 0); err != nil {
				t.Errorf("%d devices, %s: model.DecodeJob: %v", n, variant, err)
			}
			if err := validate(t, jobSchema, data); err != nil {
				t.Errorf("%d devices, %s: schema: %v", n, variant, err)
			}
		}
	}
}

func TestInvalidJobsFailBoth(t *testing.T) {
	jobSchema, _ := schemas(t)
	r := rand.New(rand.NewPCG(3, 4))
	dev := model.RandomDevice(r)
	eid, iccid, imei := dev.ID(model.KindEID), dev.ID(model.KindICCID), dev.ID(model.KindIMEI)
	one := func(kind, id string) string {
		return fmt.Sprintf(`[{"deviceIds":[{"kind":%q,"id":%q}]}]`, kind, id)
	}
	good := one(model.KindEID, eid)
	job := func(rest string) string {
		return `{"accountName":"` + account + `",` + rest + `}`
	}
	many := make([]model.Device, model.DefaultMaxJobDevices+1)
	for i := range many {
		many[i] = model.RandomDevice(r)
	}
	tooMany, _ := json.Marshal(many)

	tests := []struct{ name, body string }{
		{"bad account", `{"accountName":"123456-1","devices":` + good + `}`},
		{"account with letters", `{"accountName":"000012345a-00001","devices":` + good + `}`},
		{"no account", `{"devices":` + good + `}`},
		{"bad kind", job(`"devices":` + one("msisdn", "5551234567"))},
		{"upper-case kind", job(`"devices":` + one("EID", eid))},
		{"mdn kind", job(`"devices":` + one(model.KindMDN, "5551234567"))},
		{"31-digit eid", job(`"devices":` + one(model.KindEID, eid[:31]))},
		{"33-digit eid", job(`"devices":` + one(model.KindEID, eid+"0"))},
		{"iccid not starting 89", job(`"devices":` + one(model.KindICCID, "99"+iccid[2:]))},
		{"18-digit iccid", job(`"devices":` + one(model.KindICCID, iccid[:18]))},
		{"14-digit imei", job(`"devices":` + one(model.KindIMEI, imei[:14]))},
		{"imei with a space", job(`"devices":` + one(model.KindIMEI, imei[:7]+" "+imei[8:]))},
		{"empty id", job(`"devices":` + one(model.KindIMEI, ""))},
		{"unknown field", job(`"devices":` + good + `,"replyto2":"x"`)},
		{"unknown device field", job(`"devices":[{"deviceIds":[{"kind":"eid","id":"` + eid + `"}],"x":1}]`)},
		{"unknown id field", job(`"devices":[{"deviceIds":[{"kind":"eid","id":"` + eid + `","x":1}]}]`)},
		{"no devices", job(`"devices":[]`)},
		{"devices missing", `{"accountName":"` + account + `"}`},
		{"too many devices", job(`"devices":` + string(tooMany))},
		{"device without ids", job(`"devices":[{"deviceIds":[]}]`)},
		{"device ids missing", job(`"devices":[{}]`)},
		{"four ids", job(fmt.Sprintf(`"devices":[{"deviceIds":[{"kind":"eid","id":%q},{"kind":"iccid","id":%q},`+
			`{"kind":"imei","id":%q},{"kind":"imei","id":%q}]}]`, eid, iccid, imei, imei))},
		{"kind given twice", job(fmt.Sprintf(`"devices":[{"deviceIds":[{"kind":"imei","id":%q},`+
			`{"kind":"imei","id":%q}]}]`, imei, model.RandomIMEI(r)))},
		{"eid given twice", job(fmt.Sprintf(`"devices":[{"deviceIds":[{"kind":"eid","id":%q},`+
			`{"kind":"eid","id":%q}]}]`, eid, model.RandomEID(r)))},
		{"iccid given twice", job(fmt.Sprintf(`"devices":[{"deviceIds":[{"kind":"iccid","id":%q},`+
			`{"kind":"imei","id":%q},{"kind":"iccid","id":%q}]}]`, iccid, imei, iccid))},
		{"kind missing", job(`"devices":[{"deviceIds":[{"id":"` + eid + `"}]}]`)},
		{"dotted jobId", job(`"jobId":"a.b","devices":` + good)},
		{"jobId with a wildcard", job(`"jobId":"a*","devices":` + good)},
		{"jobId too long", job(`"jobId":"` + strings.Repeat("j", model.MaxJobIDLen+1) + `","devices":` + good)},
		{"replyTo with a space", job(`"replyTo":"my inbox","devices":` + good)},
		{"replyTo with an empty token", job(`"replyTo":"a..b","devices":` + good)},
		{"replyTo into the job queue", job(`"replyTo":"fallback.jobs.0000123456-00001","devices":` + good)},
		{"replyTo into the JetStream API", job(`"replyTo":"$JS.API.STREAM.DELETE.X","devices":` + good)},
		{"replyTo with a wildcard", job(`"replyTo":"inbox.*","devices":` + good)},
		{"number instead of string id", job(`"devices":[{"deviceIds":[{"kind":"imei","id":` + imei + `}]}]`)},
		{"number instead of string account", `{"accountName":1234567890,"devices":` + good + `}`},
		{"devices not an array", job(`"devices":{"deviceIds":[]}`)},
		{"not an object", `[` + job(`"devices":`+good) + `]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := model.DecodeJob([]byte(tc.body), 0); err == nil {
				t.Errorf("model.DecodeJob accepted %s", tc.body)
			}
			if err := validate(t, jobSchema, []byte(tc.body)); err == nil {
				t.Errorf("schema accepted %s", tc.body)
			}
		})
	}
}

// TestKnownDifferences pins the ways the schema and model.DecodeJob
// disagree, which job.schema.json's description promises. If one of these
// starts to agree, update that description.
func TestKnownDifferences(t *testing.T) {
	jobSchema, _ := schemas(t)
	dev := model.RandomDevice(rand.New(rand.NewPCG(7, 8)))
	eid, iccid, imei := dev.ID(model.KindEID), dev.ID(model.KindICCID), dev.ID(model.KindIMEI)
	flip := func(s string) string { // changes the last digit: breaks the check
		return s[:len(s)-1] + string('0'+(s[len(s)-1]-'0'+1)%10)
	}
	one := func(kind, id string) string {
		return fmt.Sprintf(`{"accountName":%q,"devices":[{"deviceIds":[{"kind":%q,"id":%q}]}]}`, account, kind, id)
	}
	goStricter := map[string]string{
		"eid check digits":  one(model.KindEID, flip(eid)),
		"iccid check digit": one(model.KindICCID, flip(iccid)),
		"imei check digit":  one(model.KindIMEI, flip(imei)),
	}
	for name, body := range goStricter {
		if _, err := model.DecodeJob([]byte(body), 0); err == nil {
			t.Errorf("%s: model.DecodeJob accepted it", name)
		}
		if err := validate(t, jobSchema, []byte(body)); err != nil {
			t.Errorf("%s: the schema refused it, its description says it cannot: %v", name, err)
		}
	}

	// The device limit is the deployment's: a worker configured with
	// TSFB_MAX_JOB_DEVICES=1 refuses what the schema (1000) accepts.
	two := `{"accountName":"` + account + `","devices":[{"deviceIds":[{"kind":"imei","id":"` + imei +
		`"}]},{"deviceIds":[{"kind":"eid","id":"` + eid + `"}]}]}`
	if _, err := model.DecodeJob([]byte(two), 1); err == nil {
		t.Error("model.DecodeJob with maxDevices 1 accepted two devices")
	}
	if err := validate(t, jobSchema, []byte(two)); err != nil {
		t.Errorf("schema refused two devices: %v", err)
	}

	imeiJob := func(extra string) string {
		return `{` + extra + `"accountName":"` + account + `","devices":[{"deviceIds":[{"kind":"imei","id":"` +
			imei + `"}]}]}`
	}
	schemaStricter := map[string]string{
		"field name case": strings.NewReplacer(`"accountName"`, `"AccountName"`, `"devices"`, `"Devices"`,
			`"deviceIds"`, `"DeviceIds"`, `"kind"`, `"Kind"`, `"id"`, `"ID"`).Replace(imeiJob("")),
		"empty jobId":   imeiJob(`"jobId":"",`),
		"null replyTo":  imeiJob(`"replyTo":null,`),
		"empty replyTo": imeiJob(`"replyTo":"",`),
	}
	for name, body := range schemaStricter {
		if _, err := model.DecodeJob([]byte(body), 0); err != nil {
			t.Errorf("%s: model.DecodeJob refused it: %v", name, err)
		}
		if err := validate(t, jobSchema, []byte(body)); err == nil {
			t.Errorf("%s: the schema accepted it, its description says it does not", name)
		}
	}
}

// producerEvents builds one or more events of every type the way the
// worker, the correlator, the sweeper and the progress tracker do, with
// At set as queue.Bus.PublishEvent sets it.
func producerEvents(t *testing.T) map[string]model.Event {
	t.Helper()
	r := rand.New(rand.NewPCG(9, 10))
	devs := []model.Device{model.RandomDevice(r), model.RandomDevice(r), model.RandomDevice(r)}
	now := time.Now().UTC()
	const jobID, reqID = "job-2024-05-01_a", "9b1c3f0e-5c4a-4c7e-9a39-1d2e3f4a5b6c"

	_, err := model.DecodeJob([]byte(`{"jobId":"a.b","accountName":"x","devices":[]}`), 0)
	inv, ok := err.(*model.InvalidJobError)
	if !ok {
		t.Fatalf("DecodeJob of a bad job: %v", err)
	}
	callbackDev := model.Device{DeviceIDs: []model.DeviceID{
		{Kind: model.KindMDN, ID: "5551234567"}, {Kind: model.KindICCID, ID: devs[0].ID(model.KindICCID)}}}
	thingspaceFault := &model.Fault{Code: "SVC0003", Message: "Device is not eligible for fallback"}

	return map[string]model.Event{
		"job.accepted": {Type: model.EventJobAccepted, JobID: jobID, AccountName: account, At: now},
		"job.rejected": {Type: model.EventJobRejected, JobID: "seq-17-17d2a3b4c5d6e7f8",
			AccountName: "_invalid", At: now, Problems: inv.Problems},
		"job.rejected, body": {Type: model.EventJobRejected, JobID: jobID, AccountName: account, At: now,
			Problems: []model.Problem{{Device: -1, Field: "body", Reason: "malformed JSON at byte 3"}}},
		"job.failed": {Type: model.EventJobFailed, JobID: jobID, AccountName: account, At: now,
			Fault: &model.Fault{Code: "TSFB_GAVE_UP", Message: "gave up after 5 deliveries: timeout"}},
		"request.submitted": {Type: model.EventRequestSubmitted, JobID: jobID, AccountName: account, At: now,
			RequestID: reqID, Devices: devs},
		"request.submitted, duplicate": {Type: model.EventRequestSubmitted, JobID: jobID, AccountName: account,
			At: now, RequestID: reqID, Devices: devs[:1], PossibleDuplicate: true},
		"device.succeeded": {Type: model.EventDeviceSucceeded, JobID: jobID, AccountName: account, At: now,
			RequestID: reqID, Device: &devs[0], Status: model.StatusSuccess},
		"device.failed, callback": {Type: model.EventDeviceFailed, JobID: jobID, AccountName: account, At: now,
			RequestID: reqID, Device: &devs[1], Status: model.StatusFailed, Fault: thingspaceFault},
		"device.failed, worker": {Type: model.EventDeviceFailed, JobID: jobID, AccountName: account, At: now,
			Device: &devs[1], Status: model.StatusFailed,
			Fault: &model.Fault{Code: "TSFB_REJECTED", Message: "thingspace: 400 bad request"}},
		"device.failed, bare fault": {Type: model.EventDeviceFailed, JobID: jobID, AccountName: account,
			At: now, RequestID: reqID, Device: &devs[1], Status: model.StatusFailed,
			Fault: &model.Fault{Code: "SVC1000"}},
		"device.timed_out": {Type: model.EventDeviceTimedOut, JobID: jobID, AccountName: account, At: now,
			RequestID: reqID, Device: &devs[2],
			Fault: &model.Fault{Code: "TIMEOUT", Message: "no final callback within 15m0s"}},
		"device.status": {Type: model.EventDeviceStatus, JobID: jobID, AccountName: account, At: now,
			RequestID: reqID, Device: &devs[2], Status: "PENDING"},
		"device.unmatched": {Type: model.EventDeviceUnmatched, JobID: model.UnknownJobID, AccountName: "unknown",
			At: now, RequestID: "no-such-request", Device: &callbackDev, Status: model.StatusFailed,
			Fault: thingspaceFault},
		"device.unmatched, known request": {Type: model.EventDeviceUnmatched, JobID: jobID, AccountName: account,
			At: now, RequestID: reqID, Device: &callbackDev, Status: model.StatusSuccess},
		"job.completed": {Type: model.EventJobCompleted, JobID: jobID, AccountName: account, At: now,
			Counts: &model.Counts{Devices: 3, Succeeded: 1, Failed: 1, TimedOut: 1}},
	}
}

func TestProducerEventsPass(t *testing.T) {
	_, eventSchema := schemas(t)
	seen := map[string]bool{}
	for name, e := range producerEvents(t) {
		seen[e.Type] = true
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate(t, eventSchema, data); err != nil {
			t.Errorf("%s: %v\n%s", name, err, data)
		}
	}
	for _, typ := range eventTypes {
		if !seen[typ] {
			t.Errorf("no %s event is tested", typ)
		}
	}
}

func TestInvalidEventsFail(t *testing.T) {
	_, eventSchema := schemas(t)
	base := func(typ, rest string) string {
		return `{"type":"` + typ + `","jobId":"j1","accountName":"` + account + `","at":"2024-05-01T12:00:00Z"` +
			rest + `}`
	}
	tests := []struct{ name, body string }{
		{"unknown type", base("device.exploded", "")},
		{"no at", `{"type":"job.accepted","jobId":"j1","accountName":"` + account + `"}`},
		{"at not a date-time", `{"type":"job.accepted","jobId":"j1","accountName":"` + account + `","at":"yesterday"}`},
		{"dotted jobId", `{"type":"job.accepted","jobId":"a.b","accountName":"` + account + `","at":"2024-05-01T12:00:00Z"}`},
		{"completed without counts", base(model.EventJobCompleted, "")},
		{"rejected without problems", base(model.EventJobRejected, "")},
		{"rejected with no problems", base(model.EventJobRejected, `,"problems":[]`)},
		{"submitted without devices", base(model.EventRequestSubmitted, `,"requestId":"r1"`)},
		{"device event without device", base(model.EventDeviceSucceeded, `,"requestId":"r1"`)},
		{"failed without fault", base(model.EventDeviceFailed, `,"device":{"deviceIds":[{"kind":"imei","id":"1"}]}`)},
		{"counts as strings", base(model.EventJobCompleted,
			`,"counts":{"devices":"1","succeeded":1,"failed":0,"timedOut":0}`)},
		{"device with no ids", base(model.EventDeviceStatus, `,"status":"PENDING","device":{"deviceIds":null}`)},
	}
	for _, tc := range tests {
		if err := validate(t, eventSchema, []byte(tc.body)); err == nil {
			t.Errorf("%s: schema accepted %s", tc.name, tc.body)
		}
	}
}
