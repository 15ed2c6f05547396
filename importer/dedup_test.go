package importer

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/tsfallback/tsfallback/model"
)

func testID(kind string, i int) model.DeviceID {
	return model.DeviceID{Kind: kind, ID: fmt.Sprintf("%020d", i)}
}

var allKinds = []string{model.KindEID, model.KindICCID, model.KindIMEI}

// fillAndCheck adds devices (three identifiers each, the second half in
// file 3) to s and checks that each keeps its first sighting and that
// nothing else is seen.
func fillAndCheck(t *testing.T, s *seenSet, devices int) {
	t.Helper()
	for i := range devices {
		file := 0
		if i >= devices/2 {
			file = 3
		}
		if err := s.add([]model.DeviceID{testID(model.KindEID, i), testID(model.KindICCID, i),
			testID(model.KindIMEI, i)}, file, i+2); err != nil {
			t.Fatal(err)
		}
	}
	if s.len() != 3*devices {
		t.Fatalf("len %d, want %d", s.len(), 3*devices)
	}
	for i := range devices {
		for _, kind := range allKinds {
			d := testID(kind, i)
			sg, seen, err := s.lookup(d.Kind, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			wantFile := 0
			if i >= devices/2 {
				wantFile = 3
			}
			if !seen || sg.line != i+2 || sg.file != wantFile || sg.kinds != 7 {
				t.Fatalf("%s %d: %+v seen %v", kind, i, sg, seen)
			}
		}
	}
	// The same digits under another kind are another identifier, and
	// one never added is not seen.
	for _, d := range []model.DeviceID{testID(model.KindEID, devices), {Kind: model.KindIMEI,
		ID: "12345"}} {
		if _, seen, err := s.lookup(d.Kind, d.ID); err != nil || seen {
			t.Errorf("%v never added: seen %v err %v", d, seen, err)
		}
	}
}

// TestSeenSetGrows fills the set through many segment splits, in memory.
func TestSeenSetGrows(t *testing.T) {
	s := newSeenSet(1024, t.TempDir())
	defer s.release()
	const devices = 60000 // three identifiers each: about 15 splits
	fillAndCheck(t, s, devices)
	if s.spilledBytes() != 0 {
		t.Errorf("spilled %d bytes within the budget", s.spilledBytes())
	}
	segs := map[*segment]bool{}
	for _, g := range s.dir {
		segs[g] = true
	}
	perID := float64(len(segs)*segBytes) / float64(s.len())
	if perID > 32 {
		t.Errorf("%.1f bytes an identifier, want at most 32", perID)
	}
}

// TestSeenSetSpills holds two segments in memory and the rest on disk:
// the answers are the same, memory stays at the budget, and the spill
// file is gone after release.
func TestSeenSetSpills(t *testing.T) {
	dir := t.TempDir()
	s := newSeenSet(0, dir) // the minimum: two segments
	const devices = 60000
	fillAndCheck(t, s, devices)
	if s.resident > s.maxResident || s.maxResident != 2 {
		t.Errorf("%d segments resident, budget %d", s.resident, s.maxResident)
	}
	segs, spilled := map[*segment]bool{}, 0
	for _, g := range s.dir {
		if !segs[g] {
			segs[g] = true
			if g.spilled() {
				spilled++
			}
		}
	}
	if spilled != len(segs)-s.resident || int64(spilled)*segBytes != s.spilledBytes() {
		t.Errorf("%d of %d segments spilled, %d resident, file %d bytes", spilled, len(segs),
			s.resident, s.spilledBytes())
	}
	s.release()
	left, err := os.ReadDir(dir)
	if err != nil || len(left) != 0 {
		t.Errorf("spill directory after release: %v %v", left, err)
	}
}

// TestSeenSetSpillError: a spill file that cannot be created stops with
// an error that says where and what to do, instead of losing repeats.
func TestSeenSetSpillError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	s := newSeenSet(0, dir)
	defer s.release()
	var err error
	for i := 0; err == nil && i < 60000; i++ {
		err = s.add([]model.DeviceID{testID(model.KindEID, i)}, 0, i+2)
	}
	if err == nil || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), "TSFB_IMPORT_DEDUP_MEMORY_MB") {
		t.Fatalf("error %v, want one naming %s and the setting", err, dir)
	}
}

// TestSeenSetFilesAndGaps: positions map back to the right file and line
// when files start at different lines and some files add nothing.
func TestSeenSetFilesAndGaps(t *testing.T) {
	s := newSeenSet(1, t.TempDir())
	defer s.release()
	adds := []struct{ file, line int }{{0, 2}, {0, 900}, {2, 2}, {2, 3}, {5, 40}, {6, 1}}
	for i, a := range adds {
		if err := s.add([]model.DeviceID{testID(model.KindIMEI, i)}, a.file, a.line); err != nil {
			t.Fatal(err)
		}
	}
	for i, a := range adds {
		sg, seen, err := s.lookup(model.KindIMEI, testID(model.KindIMEI, i).ID)
		if err != nil || !seen || sg.file != a.file || sg.line != a.line || sg.kinds != 4 {
			t.Errorf("add %d: %+v seen %v err %v, want file %d line %d", i, sg, seen, err,
				a.file, a.line)
		}
	}
}

// TestDuplicatesBeyondMemory imports the same file with the duplicate
// check in memory and with a budget that spills most of it: the result,
// the report and the jobs are the same, and no spill file is left.
func TestDuplicatesBeyondMemory(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	r := rand.New(rand.NewPCG(3, 4))
	var in strings.Builder
	in.WriteString("eid,iccid,imei\n")
	var devs []model.Device
	for i := range 40000 {
		d := model.RandomDevice(r)
		switch {
		case i > 0 && i%7 == 0: // the same device again
			d = devs[r.IntN(len(devs))]
		case i > 0 && i%11 == 0: // another device that shares an IMEI
			d.DeviceIDs[2] = devs[r.IntN(len(devs))].DeviceIDs[2]
		}
		devs = append(devs, d)
		fmt.Fprintf(&in, "%s,%s,%s\n", d.ID(model.KindEID), d.ID(model.KindICCID),
			d.ID(model.KindIMEI))
	}
	run := func(cfg Config) (Result, string, int) {
		im, err := New(nil, cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		jobs := 0
		im.onJob = func(model.Job) { jobs++ }
		var report bytes.Buffer
		res, err := im.Run(context.Background(), Options{Files: []string{StdinName},
			Account: acct, DryRun: true, Report: &report, RunID: "r"},
			strings.NewReader(in.String()), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Seconds = 0
		return res, report.String(), jobs
	}
	memRes, memReport, memJobs := run(Config{DedupMemoryMB: 1024})
	diskRes, diskReport, diskJobs := run(Config{DedupMemoryMB: 1})
	if memRes.Duplicates < 5000 || memRes.Rejections[ReasonConflict] < 3000 ||
		memRes.Devices+memRes.Duplicates+memRes.Rejected != 40000 {
		t.Fatalf("in memory: %+v", memRes)
	}
	if memRes.DedupSpilledBytes != 0 || diskRes.DedupSpilledBytes == 0 {
		t.Errorf("spilled %d bytes in memory and %d with 1 MiB", memRes.DedupSpilledBytes,
			diskRes.DedupSpilledBytes)
	}
	diskRes.DedupSpilledBytes = 0
	if fmt.Sprint(memRes) != fmt.Sprint(diskRes) || memReport != diskReport || memJobs != diskJobs {
		t.Errorf("spilled: %+v, %d jobs\nin memory: %+v, %d jobs", diskRes, diskJobs, memRes, memJobs)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("left in TMPDIR: %v", left)
	}
}

// TestSpillDirWarnedEarly: a TMPDIR the duplicate check cannot use is
// logged at the start of a run, and a run that never needs it succeeds.
func TestSpillDirWarnedEarly(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	core, logs := observer.New(zap.WarnLevel)
	im, err := New(nil, Config{}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	res, err := im.Run(context.Background(), Options{Files: []string{StdinName}, Account: acct,
		DryRun: true}, strings.NewReader("iccid\n"+iccids[0]+"\n"), nil)
	if err != nil || res.Devices != 1 {
		t.Fatalf("run: %+v, %v", res, err)
	}
	if logs.FilterMessage("import_spill_unavailable").Len() != 1 {
		t.Errorf("no warning of the spill directory: %v", logs.All())
	}
}

// TestSeenSetBrokenAfterFailedSplit: when a split cannot write a half
// (a full disk), the set returns that error from then on instead of
// reading a half-written segment, and releasing it is safe.
func TestSeenSetBrokenAfterFailedSplit(t *testing.T) {
	s := newSeenSet(0, t.TempDir())
	var err error
	i := 0
	for ; err == nil && s.spill == nil; i++ {
		err = s.add([]model.DeviceID{testID(model.KindEID, i)}, 0, i+2)
	}
	if err != nil {
		t.Fatal(err)
	}
	// Writes at the file's end now fail, as on a full disk.
	s.spillEnd = 1 << 62
	for ; err == nil && i < 200000; i++ {
		err = s.add([]model.DeviceID{testID(model.KindEID, i)}, 0, i+2)
	}
	if err == nil || !strings.Contains(err.Error(), "writing its spill file") {
		t.Fatalf("error %v, want one from a split that could not write", err)
	}
	if s.resident > s.maxResident {
		t.Errorf("%d segments resident after the failure, budget %d", s.resident, s.maxResident)
	}
	if _, _, lerr := s.lookup(model.KindEID, testID(model.KindEID, 1).ID); lerr == nil {
		t.Error("lookup after a failed split: no error")
	}
	if aerr := s.add([]model.DeviceID{testID(model.KindIMEI, 1)}, 0, 1<<20); aerr == nil {
		t.Error("add after a failed split: no error")
	}
	s.release()
}

// TestSeenSetPositionLimit: rows past the position limit are not added,
// and do not disturb where earlier and later files map.
func TestSeenSetPositionLimit(t *testing.T) {
	s := newSeenSet(1, t.TempDir())
	defer s.release()
	add := func(kind string, i, file, line int) {
		if err := s.add([]model.DeviceID{testID(kind, i)}, file, line); err != nil {
			t.Fatal(err)
		}
	}
	add(model.KindEID, 1, 0, 2)
	add(model.KindEID, 2, 1, 3_000_000_000) // past the limit: not held
	add(model.KindEID, 3, 2, 50)
	for _, c := range []struct {
		i, file, line int
		seen          bool
	}{{1, 0, 2, true}, {2, 0, 0, false}, {3, 2, 50, true}} {
		sg, seen, err := s.lookup(model.KindEID, testID(model.KindEID, c.i).ID)
		if err != nil || seen != c.seen || (seen && (sg.file != c.file || sg.line != c.line)) {
			t.Errorf("device %d: %+v seen %v err %v, want file %d line %d seen %v", c.i, sg,
				seen, err, c.file, c.line, c.seen)
		}
	}
}

// TestRepeatRulesAgainstAModel imports random files drawn from a few
// identifiers, so that rows repeat, fill in and contradict each other in
// every way, and holds each row's fate to a model of the rules written
// with plain maps: a row whose identifiers all belong to one device is a
// duplicate (and what it fills in becomes that device's), one that reaches
// two devices or gives a kind the device has another value is a conflict,
// the rest are new devices.
func TestRepeatRulesAgainstAModel(t *testing.T) {
	kinds := []string{model.KindEID, model.KindICCID, model.KindIMEI}
	pools := map[string][]string{model.KindEID: eids[:5], model.KindICCID: iccids[:5],
		model.KindIMEI: imeis[:5]}
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 77))
		var in strings.Builder
		in.WriteString("eid,iccid,imei\n")
		owner := map[string]int{}          // kind+value -> device
		has := map[int]map[string]string{} // device -> kind -> value
		want := map[int]string{}           // line -> "duplicate" or ReasonConflict
		newDevices := 0
		for row := range 12 {
			line := row + 2
			vals := map[string]string{}
			var cells []string
			for _, k := range kinds {
				v := ""
				if r.IntN(10) < 6 {
					v = pools[k][r.IntN(len(pools[k]))]
					vals[k] = v
				}
				cells = append(cells, v)
			}
			if len(vals) == 0 {
				cells[0] = pools[model.KindEID][r.IntN(5)]
				vals[model.KindEID] = cells[0]
			}
			in.WriteString(strings.Join(cells, ",") + "\n")
			devs := map[int]bool{}
			for k, v := range vals {
				if d, ok := owner[k+v]; ok {
					devs[d] = true
				}
			}
			switch {
			case len(devs) == 0:
				d := line
				has[d] = map[string]string{}
				for k, v := range vals {
					owner[k+v], has[d][k] = d, v
				}
				newDevices++
			case len(devs) > 1:
				want[line] = ReasonConflict
			default:
				var d int
				for d = range devs {
				}
				conflict := false
				for k, v := range vals {
					if _, known := owner[k+v]; !known && has[d][k] != "" {
						conflict = true
					}
				}
				if conflict {
					want[line] = ReasonConflict
					break
				}
				want[line] = ReasonDuplicate
				for k, v := range vals {
					if _, known := owner[k+v]; !known {
						owner[k+v], has[d][k] = d, v
					}
				}
			}
		}
		got := runDry(t, in.String(), Options{Account: acct})
		if got.err != nil {
			t.Fatalf("seed %d: %v", seed, got.err)
		}
		gotLines := map[int]string{}
		for _, rj := range got.rejs {
			gotLines[rj.Line] = rj.Code
		}
		if fmt.Sprint(gotLines) != fmt.Sprint(want) || got.res.Devices != newDevices {
			t.Fatalf("seed %d:\n%s\nreport %v (%d devices)\nmodel  %v (%d devices)", seed,
				in.String(), gotLines, got.res.Devices, want, newDevices)
		}
	}
}

// TestReasonNamesFilledInIdentifier: a row that meets an identifier a
// later row filled in is told so, since the first sighting's line does
// not show it.
func TestReasonNamesFilledInIdentifier(t *testing.T) {
	in := "eid,iccid,imei\n," + iccids[1] + ",\n" + eids[1] + "," + iccids[1] + ",\n" + eids[1] +
		",," + imeis[1] + "\n" + eids[1] + ",,\n"
	got := runDry(t, in, Options{Account: acct})
	if len(got.rejs) != 3 {
		t.Fatalf("report %+v", got.rejs)
	}
	for _, rj := range got.rejs[1:] {
		if !strings.Contains(rj.Reason, "the device of line 2 (a later row gave it that eid)") {
			t.Errorf("line %d: %q does not say the eid came later", rj.Line, rj.Reason)
		}
	}
}
