package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tsfallback/tsfallback/model"
)

const acct = "0000123456-00001"
const acct2 = "0000654321-00002"

// Valid identifiers for the fixtures, made rather than copied.
var eids, iccids, imeis []string

func init() {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		d := model.RandomDevice(r)
		eids = append(eids, d.ID(model.KindEID))
		iccids = append(iccids, d.ID(model.KindICCID))
		imeis = append(imeis, d.ID(model.KindIMEI))
	}
}

// imeiZero is a valid IMEI that starts with 0.
func imeiZero() string {
	body := "01234567890123"
	return body + string(model.LuhnDigit(body))
}

// badLuhn changes the last digit of a valid Luhn string.
func badLuhn(s string) string {
	last := s[len(s)-1]
	return s[:len(s)-1] + string('0'+(last-'0'+1)%10)
}

type dryRun struct {
	res  Result
	rejs []Rejection
	jobs []model.Job
	err  error
}

func runDry(t *testing.T, input string, opts Options) dryRun {
	t.Helper()
	im, err := New(nil, Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out dryRun
	im.onJob = func(j model.Job) {
		if err := j.Validate(opts.JobSize); err != nil {
			t.Errorf("job %s is invalid: %v", j.JobID, err)
		}
		j.Devices = append([]model.Device(nil), j.Devices...)
		out.jobs = append(out.jobs, j)
	}
	var report bytes.Buffer
	opts.Files = []string{StdinName}
	opts.DryRun = true
	opts.Report = &report
	if opts.RunID == "" {
		opts.RunID = "run"
	}
	out.res, out.err = im.Run(context.Background(), opts, strings.NewReader(input), nil)
	dec := json.NewDecoder(&report)
	for dec.More() {
		var r Rejection
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("decoding report: %v", err)
		}
		out.rejs = append(out.rejs, r)
	}
	return out
}

func TestImportVariants(t *testing.T) {
	e, c, m := eids, iccids, imeis
	row := func(i int, sep string) string { return e[i] + sep + c[i] + sep + m[i] }
	tests := []struct {
		name   string
		input  string
		opts   Options
		rows   int
		devs   int
		jobs   int
		rej    int
		dups   int
		codes  map[string]int
		lines  []int // lines of the report, in order
		column string
		// noAccount leaves Options.Account empty; otherwise it
		// defaults to acct.
		noAccount bool
	}{
		{name: "lf", input: "eid,iccid,imei\n" + row(0, ",") + "\n" + row(1, ",") + "\n",
			rows: 2, devs: 2, jobs: 1},
		{name: "no final newline", input: "eid,iccid,imei\n" + row(0, ","), rows: 1, devs: 1, jobs: 1},
		{name: "bom crlf", input: "\ufeffeid,iccid,imei\r\n" + row(0, ",") + "\r\n" + row(1, ",") +
			"\r\nbad,,\r\n", rows: 3, devs: 2, jobs: 1, rej: 1, lines: []int{4},
			codes: map[string]int{ReasonNotDigits: 1}},
		{name: "bare cr", input: "eid,iccid,imei\r" + row(0, ",") + "\r\r" + row(1, ",") + "\rx,,\r",
			rows: 3, devs: 2, jobs: 1, rej: 1, lines: []int{5}, codes: map[string]int{ReasonNotDigits: 1}},
		{name: "semicolon", input: "eid;iccid;imei\n" + row(0, ";") + "\n" + row(1, ";") + "\n",
			rows: 2, devs: 2, jobs: 1},
		{name: "semicolon given", input: "iccid;notes,with,commas\n" + c[0] + ";a,b,c\n",
			opts: Options{Separator: ';'}, rows: 1, devs: 1, jobs: 1},
		{name: "tab", input: "eid\ticcid\timei\n" + row(0, "\t") + "\n" + e[1] + "\t\t" + m[1] + "\n",
			rows: 2, devs: 2, jobs: 1},
		{name: "quoted", input: "\"eid\",\"iccid\",\"imei\",notes\n" +
			`"` + e[0] + `","` + c[0] + `","` + m[0] + `","say ""hi"", ok"` + "\n" +
			e[1] + "," + c[1] + "," + m[1] + ",\"two\nline, note\"\n" +
			row(2, ",") + ",x\n", rows: 3, devs: 3, jobs: 1},
		{name: "unclosed quote costs one row", input: "iccid,notes\n" + c[0] + ",\"oops\n" +
			c[1] + ",fine\n" + c[2] + ",fine\n", rows: 3, devs: 2, jobs: 1, rej: 1,
			lines: []int{2}, codes: map[string]int{ReasonMalformed: 1}},
		{name: "unclosed quote mid-file", input: "iccid,notes\n\"" + c[0] + "\n" +
			strings.Join(iccids[1:20], "\n") + "\n", rows: 20, devs: 19, jobs: 1, rej: 1,
			lines: []int{2}, codes: map[string]int{ReasonMalformed: 1}},
		{name: "spaces", input: " eid , iccid ,imei \n  " + e[0] + " ,  \"" + c[0] + "\"  , " + m[0] +
			"\t\n\u00a0" + e[1] + "\u00a0,,\n", rows: 2, devs: 2, jobs: 1},
		{name: "blank lines", input: "\n\neid,iccid,imei\n\n" + row(0, ",") + "\n   \n,,\n ; \n" +
			row(1, ",") + "\n\n", rows: 3, devs: 2, jobs: 1, rej: 1, lines: []int{8},
			codes: map[string]int{ReasonNotDigits: 1}},
		{name: "comments", input: "# exported by hand\neid,iccid,imei\n#" + row(0, ",") + "\n  # x\n" +
			row(1, ",") + "\n", rows: 1, devs: 1, jobs: 1},
		{name: "header variants", input: "ESIM EID;Sim_ICCID;Device-IMEI;Account Name;MDN\n" +
			row(0, ";") + ";" + acct + ";5551234567\n", noAccount: true,
			rows: 1, devs: 1, jobs: 1},
		{name: "header variants 2", input: "EUICC ID,ICCID Number,IMEI #,accountname\n" +
			row(0, ",") + "," + acct + "\n", rows: 1, devs: 1, jobs: 1},
		{name: "header variants 3", input: "Euicc,SIM,imei_number\n" + row(0, ",") + "\n",
			opts: Options{Account: acct}, rows: 1, devs: 1, jobs: 1},
		{name: "only iccid", input: "iccid\n" + c[0] + "\n" + c[1] + "\n", rows: 2, devs: 2, jobs: 1},
		{name: "account column two accounts", input: "iccid,account\n" + c[0] + "," + acct + "\n" +
			c[1] + "," + acct2 + "\n" + c[2] + "," + acct + "\n", rows: 3, devs: 3, jobs: 2,
			noAccount: true},
		{name: "account column and option", input: "iccid,account\n" + c[0] + "," + acct + "\n" +
			c[1] + "," + acct2 + "\n" + c[2] + ",\n", opts: Options{Account: acct},
			rows: 3, devs: 2, jobs: 1, rej: 1, lines: []int{3},
			codes: map[string]int{ReasonAccountMismatch: 1}, column: "account"},
		{name: "empty account cell without option", input: "iccid,account\n" + c[0] + ",\n" +
			c[1] + ",12345\n", noAccount: true, rows: 2, rej: 2, lines: []int{2, 3},
			codes: map[string]int{ReasonNoAccount: 1, ReasonBadAccount: 1}},
		{name: "no identifier", input: "iccid,imei,notes\n,,hello\n" + c[0] + ",,\n", rows: 2,
			devs: 1, jobs: 1, rej: 1, lines: []int{2}, codes: map[string]int{ReasonNoIdentifier: 1}},
		{name: "wrong length", input: "iccid,imei,eid\n" + c[0][:18] + ",,\n," + m[0] + "1,\n,," +
			e[0][:31] + "\n", rows: 3, rej: 3, codes: map[string]int{ReasonLength: 3}},
		{name: "not digits", input: "iccid\n" + c[0][:10] + "x" + c[0][11:] + "\n'" + c[1] + "\n",
			rows: 2, rej: 2, codes: map[string]int{ReasonNotDigits: 2}},
		{name: "check digit", input: "eid,iccid,imei\n" + e[0] + "," + badLuhn(c[0]) + "," +
			badLuhn(m[0]) + "\n" + badLuhn(e[1]) + ",,\n", rows: 2, rej: 2,
			codes: map[string]int{ReasonCheckDigit: 3}, lines: []int{2, 2, 3}},
		{name: "prefix", input: "iccid\n" + "79" + c[0][2:] + "\n", rows: 1, rej: 1,
			codes: map[string]int{ReasonPrefix: 1}},
		{name: "scientific", input: "iccid;eid\n8,9148E+19;\n;8.90490320000E+31\n8.9148e19;\n",
			rows: 3, rej: 3, codes: map[string]int{ReasonScientific: 3}},
		{name: "zeros", input: "iccid,eid\n891480000123456" + "00000" + ",\n," +
			"890490321234567" + strings.Repeat("0", 17) + "\n", rows: 2, rej: 2,
			codes: map[string]int{ReasonZeros: 2}},
		{name: "decimal suffix", input: "imei,iccid\n" + m[0] + ".0,\n," + c[0] + ".00\n", rows: 2,
			rej: 2, codes: map[string]int{ReasonDecimal: 2}},
		{name: "leading zero", input: "imei\n" + imeiZero()[1:] + "\n" + imeiZero() + "\n", rows: 2,
			devs: 1, jobs: 1, rej: 1, codes: map[string]int{ReasonLeadingZeros: 1}},
		{name: "duplicates", input: "eid,iccid,imei\n" + row(0, ",") + "\n,," + m[0] + "\n" +
			row(0, ",") + "\n" + row(1, ",") + "\n" + ",," + m[0] + "\n", rows: 5, devs: 2, jobs: 1,
			dups: 3, lines: []int{3, 4, 6}, codes: map[string]int{}},
		// Line 2 is device 0; 3 repeats it, 4 and 5 share its ICCID with
		// other EIDs and IMEIs, 6 its EID with another ICCID; 7 gives its
		// EID alone; 8 is device 4 without an IMEI, 9 fills the IMEI in;
		// 10 has device 0's EID and device 4's ICCID.
		{name: "conflicting rows", input: "eid,iccid,imei\n" + row(0, ",") + "\n" + row(0, ",") +
			"\n" + e[1] + "," + c[0] + "," + m[1] + "\n" + e[2] + "," + c[0] + "," + m[2] + "\n" +
			e[0] + "," + c[9] + "," + m[9] + "\n" + e[0] + ",,\n" + e[4] + "," + c[4] + ",\n" +
			row(4, ",") + "\n" + e[0] + "," + c[4] + ",\n",
			rows: 9, devs: 2, jobs: 1, rej: 4, dups: 3, lines: []int{3, 4, 5, 6, 7, 9, 10},
			codes: map[string]int{ReasonConflict: 4}},
		// Line 2 is an IMEI alone; 3 fills in an EID for it, which 4
		// contradicts and 5 repeats alone. Line 6 is device 1 without an
		// IMEI, 7 fills one in through its ICCID, and 8 gives its EID
		// another IMEI.
		{name: "rows that fill in", input: "eid,iccid,imei\n,," + m[4] + "\n" + e[5] + ",," + m[4] +
			"\n" + e[6] + ",," + m[4] + "\n" + e[5] + ",,\n" + e[1] + "," + c[1] + ",\n," + c[1] +
			"," + m[9] + "\n" + e[1] + ",," + m[7] + "\n",
			rows: 7, devs: 2, jobs: 1, rej: 2, dups: 3, lines: []int{3, 4, 5, 7, 8},
			codes: map[string]int{ReasonConflict: 2}},
		// Line 2 is an EID alone, 3 fills in an ICCID; 4 gives that ICCID
		// another EID (a conflict, though the ICCID's own entry was
		// written by the fill-in), and 5, that other EID alone, is then a
		// device of its own.
		{name: "conflict through a filled-in identifier", input: "eid,iccid\n" + e[0] + ",\n" +
			e[0] + "," + c[0] + "\n" + e[1] + "," + c[0] + "\n" + e[1] + ",\n",
			rows: 4, devs: 2, jobs: 1, rej: 1, dups: 1, lines: []int{3, 4},
			codes: map[string]int{ReasonConflict: 1}},
		{name: "job size", input: "iccid\n" + strings.Join(iccids[:5], "\n") + "\n",
			opts: Options{JobSize: 2}, rows: 5, devs: 5, jobs: 3},
		{name: "long line", input: "iccid\n" + strings.Repeat("9", MaxLineBytes+10) + "\n" + c[0] + "\n",
			rows: 2, devs: 1, jobs: 1, rej: 1, lines: []int{2}, codes: map[string]int{ReasonMalformed: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			if opts.Account == "" && !tt.noAccount {
				opts.Account = acct
			}
			got := runDry(t, tt.input, opts)
			if got.err != nil {
				t.Fatalf("Run: %v", got.err)
			}
			r := got.res
			if r.Rows != tt.rows || r.Devices != tt.devs || r.Jobs != tt.jobs ||
				r.Rejected != tt.rej || r.Duplicates != tt.dups {
				t.Errorf("rows %d devices %d jobs %d rejected %d dups %d, want %d %d %d %d %d\nreport: %+v",
					r.Rows, r.Devices, r.Jobs, r.Rejected, r.Duplicates,
					tt.rows, tt.devs, tt.jobs, tt.rej, tt.dups, got.rejs)
			}
			if tt.codes != nil {
				for code, n := range tt.codes {
					if r.Rejections[code] != n {
						t.Errorf("rejections[%s] = %d, want %d (all %v)", code, r.Rejections[code], n,
							r.Rejections)
					}
				}
				if len(r.Rejections) != len(tt.codes) {
					t.Errorf("rejections %v, want %v", r.Rejections, tt.codes)
				}
			}
			if tt.lines != nil {
				var lines []int
				for _, j := range got.rejs {
					lines = append(lines, j.Line)
				}
				if fmt.Sprint(lines) != fmt.Sprint(tt.lines) {
					t.Errorf("report lines %v, want %v (%+v)", lines, tt.lines, got.rejs)
				}
			}
			if tt.column != "" && (len(got.rejs) == 0 || got.rejs[0].Column != tt.column) {
				t.Errorf("report %+v, want column %q", got.rejs, tt.column)
			}
			devs := 0
			for _, j := range got.jobs {
				devs += len(j.Devices)
			}
			if devs != tt.devs || len(got.jobs) != tt.jobs {
				t.Errorf("jobs carry %d devices in %d jobs", devs, len(got.jobs))
			}
			if ExitCode(r, nil) != map[bool]int{true: 1, false: 0}[tt.rej > 0] {
				t.Errorf("exit code %d with %d rejected", ExitCode(r, nil), tt.rej)
			}
		})
	}
}
