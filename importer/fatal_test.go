package importer

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestImportFatal(t *testing.T) {
	tests := []struct {
		name  string
		input string
		opts  Options
		want  error
		text  string
	}{
		{name: "empty file", input: "", want: ErrHeader, text: "empty"},
		{name: "only comments", input: "# nothing\n\n", want: ErrHeader, text: "empty"},
		{name: "no identifier column", input: "name,notes\na,b\n", want: ErrHeader,
			text: "names no identifier column"},
		{name: "data as header", input: iccids[0] + "\n" + iccids[1] + "\n", want: ErrHeader,
			text: "looks like an identifier"},
		{name: "kind twice", input: "iccid,sim\n", want: ErrHeader, text: "both name iccid"},
		{name: "no account", input: "iccid\n" + iccids[0] + "\n", opts: Options{Account: "-"},
			want: ErrNoAccount},
		{name: "utf16", input: "\xff\xfei\x00c\x00", want: ErrUTF16},
		{name: "bad job size", input: "iccid\n", opts: Options{JobSize: MaxJobSize + 1},
			want: ErrOptions},
		{name: "bad account option", input: "iccid\n", opts: Options{Account: "12"}, want: ErrOptions},
		{name: "bad run id", input: "iccid\n", opts: Options{RunID: "a.b"}, want: ErrOptions},
		{name: "bad separator", input: "iccid\n", opts: Options{Separator: '|'}, want: ErrOptions},
		{name: "bad reply", input: "iccid\n", opts: Options{ReplyTo: "a.*"}, want: ErrOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			switch opts.Account {
			case "":
				opts.Account = acct
			case "-":
				opts.Account = ""
			}
			got := runDry(t, tt.input, opts)
			if !errors.Is(got.err, tt.want) || !strings.Contains(got.err.Error(), tt.text) {
				t.Fatalf("err = %v, want %v containing %q", got.err, tt.want, tt.text)
			}
			if ExitCode(got.res, got.err) != ExitFatal {
				t.Errorf("exit code %d, want %d", ExitCode(got.res, got.err), ExitFatal)
			}
		})
	}
}

func TestOptionsFiles(t *testing.T) {
	im, _ := New(nil, Config{}, nil)
	ctx := context.Background()
	for _, files := range [][]string{nil, {"-", "-"}, {""}} {
		_, err := im.Run(ctx, Options{Files: files, Account: acct, DryRun: true}, nil, nil)
		if !errors.Is(err, ErrOptions) {
			t.Errorf("files %q: err = %v, want ErrOptions", files, err)
		}
	}
	_, err := im.Run(ctx, Options{Files: []string{"x.csv"}, Account: acct}, nil, nil)
	if !errors.Is(err, ErrOptions) {
		t.Errorf("real run without NATS: err = %v, want ErrOptions", err)
	}
	_, err = im.Run(ctx, Options{Files: []string{filepath.Join(t.TempDir(), "missing.csv")},
		Account: acct, DryRun: true}, nil, nil)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: err = %v", err)
	}
	// The same file twice, under two names.
	dir := t.TempDir()
	a := filepath.Join(dir, "a.csv")
	if err := os.WriteFile(a, []byte("iccid\n"+iccids[0]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = im.Run(ctx, Options{Files: []string{a, filepath.Join(dir, ".", "a.csv")},
		Account: acct, DryRun: true}, nil, nil)
	if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), "are the same file") {
		t.Errorf("the same file twice: err = %v, want ErrOptions", err)
	}
}

func TestReasonTexts(t *testing.T) {
	tests := []struct{ kind, value, code, text string }{
		{"iccid", "89148000012345600000", ReasonZeros,
			"digits replaced by zeros (a spreadsheet kept only 15 significant digits)"},
		{"iccid", "8.9148E+19", ReasonScientific, "scientific notation"},
		{"imei", imeis[0] + ".0", ReasonDecimal, "without the suffix it is valid"},
		{"imei", imeiZero()[1:], ReasonLeadingZeros, "leading zeros lost"},
		{"imei", "35" + "123456789012", ReasonLength, "14 digits, want 15"},
		{"eid", "89" + strings.Repeat("1", 29), ReasonLength, "31 digits, want 32"},
		{"iccid", "8914 800", ReasonNotDigits, "not all digits"},
		{"iccid", badLuhn(iccids[0]), ReasonCheckDigit, "Luhn"},
		{"eid", badLuhn(eids[0]), ReasonCheckDigit, "mod 97"},
	}
	for _, tt := range tests {
		code, text := checkID(tt.kind, tt.value)
		if code != tt.code || !strings.Contains(text, tt.text) {
			t.Errorf("checkID(%s, %q) = %s %q, want %s containing %q", tt.kind, tt.value,
				code, text, tt.code, tt.text)
		}
	}
	for _, v := range []string{iccids[0], eids[0], imeis[0]} {
		kind := map[int]string{20: "iccid", 32: "eid", 15: "imei"}[len(v)]
		if code, text := checkID(kind, v); code != "" {
			t.Errorf("valid %s %s rejected: %s", kind, v, text)
		}
	}
}

// TestFilesAndReport reads two files from disk: the report names the file
// and a duplicate across files points at the first one.
func TestFilesAndReport(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.csv")
	b := filepath.Join(dir, "b.csv")
	os.WriteFile(a, []byte("iccid\n"+iccids[0]+"\n"+iccids[1]+"\n"), 0o600)
	os.WriteFile(b, []byte("sim;imei\n"+iccids[0]+";\n;8.9E+14\n"), 0o600)
	var report, summary bytes.Buffer
	im, _ := New(nil, Config{}, nil)
	res, err := im.Run(context.Background(), Options{Files: []string{a, b}, Account: acct,
		DryRun: true, Report: &report, RunID: "r1"}, nil, &summary)
	if err != nil {
		t.Fatal(err)
	}
	if res.Files != 2 || res.Rows != 4 || res.Devices != 2 || res.Duplicates != 1 ||
		res.Rejected != 1 || res.FirstJobID != "r1-1" || res.LastJobID != "r1-1" {
		t.Errorf("result %+v", res)
	}
	want := `{"file":"` + b + `","line":2,"column":"sim","value":"` + iccids[0] +
		`","reason":"duplicate: the same iccid as ` + a + ` line 2, published once",` +
		`"code":"duplicate"}` + "\n" +
		`{"file":"` + b + `","line":3,"column":"imei","value":"8.9E+14","reason":"scientific notation: ` +
		`a spreadsheet turned the identifier into a number and dropped digits; format the column ` +
		`as text and export again","code":"scientific_notation"}` + "\n"
	if report.String() != want {
		t.Errorf("report:\n%s\nwant:\n%s", report.String(), want)
	}
	for _, s := range []string{"run id:      r1", "would publish (dry run): 2 devices in 1 job",
		"scientific_notation", "duplicates:  1 rows"} {
		if !strings.Contains(summary.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, summary.String())
		}
	}
}

func TestJobIDsDeterministic(t *testing.T) {
	var input strings.Builder
	input.WriteString("iccid,account\n")
	for i := range 7 {
		a := acct
		if i%3 == 0 {
			a = acct2
		}
		input.WriteString(iccids[i] + "," + a + "\n")
	}
	var first []string
	for range 3 {
		got := runDry(t, input.String(), Options{JobSize: 2, RunID: "same"})
		var ids []string
		for _, j := range got.jobs {
			ids = append(ids, j.JobID+"/"+j.AccountName+"/"+j.Devices[0].ID("iccid"))
		}
		if first == nil {
			first = ids
		}
		if strings.Join(ids, " ") != strings.Join(first, " ") {
			t.Fatalf("job ids differ between runs: %v vs %v", ids, first)
		}
	}
	// acct2 rows 0,3,6 and acct rows 1,2,4,5: jobs fill as rows arrive.
	want := []string{"same-1/" + acct + "/" + iccids[1], "same-2/" + acct2 + "/" + iccids[0],
		"same-3/" + acct + "/" + iccids[4], "same-4/" + acct2 + "/" + iccids[6]}
	if strings.Join(first, " ") != strings.Join(want, " ") {
		t.Errorf("jobs %v, want %v", first, want)
	}
}

func TestNewlineReader(t *testing.T) {
	in := "a\r\nb\rc\n\r\r\nd\r"
	for name, r := range map[string]func() *newlineReader{
		"whole": func() *newlineReader { return &newlineReader{r: strings.NewReader(in)} },
		"one byte": func() *newlineReader {
			return &newlineReader{r: iotest.OneByteReader(strings.NewReader(in))}
		},
	} {
		var out bytes.Buffer
		if _, err := out.ReadFrom(r()); err != nil {
			t.Fatal(err)
		}
		if out.String() != "a\nb\nc\n\n\nd\n" {
			t.Errorf("%s: %q", name, out.String())
		}
	}
}

func TestWriteSample(t *testing.T) {
	var a, b bytes.Buffer
	if err := WriteSample(&a, 3000, 7); err != nil {
		t.Fatal(err)
	}
	WriteSample(&b, 3000, 7)
	if a.String() != b.String() {
		t.Error("same seed, different samples")
	}
	got := runDry(t, a.String(), Options{Account: acct})
	if got.err != nil || got.res.Devices != 3000 || got.res.Rejected != 0 || got.res.Duplicates != 0 ||
		got.res.Jobs != 3 {
		t.Errorf("sample import: %+v %v", got.res, got.err)
	}
}

func TestProgressAndCancel(t *testing.T) {
	var sample, prog bytes.Buffer
	WriteSample(&sample, 1000, 2)
	im, _ := New(nil, Config{}, nil)
	res, err := im.Run(context.Background(), Options{Files: []string{StdinName}, Account: acct,
		DryRun: true, Progress: &prog, ProgressInterval: time.Nanosecond},
		bytes.NewReader(sample.Bytes()), nil)
	if err != nil || res.Devices != 1000 {
		t.Fatalf("%+v %v", res, err)
	}
	lines := strings.Split(strings.TrimSpace(prog.String()), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "import: ") ||
		!strings.Contains(lines[len(lines)-1], "1000 rows, 1000 devices in 1 job") {
		t.Errorf("progress:\n%s", prog.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = im.Run(ctx, Options{Files: []string{StdinName}, Account: acct, DryRun: true},
		bytes.NewReader(sample.Bytes()), nil)
	if !errors.Is(err, context.Canceled) || ExitCode(Result{}, err) != ExitFatal {
		t.Errorf("canceled run: %v", err)
	}
}
