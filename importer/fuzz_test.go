package importer

import (
	"testing"
)

// FuzzReader feeds arbitrary input through a dry run: it must never panic,
// and whatever it accepts must form valid jobs (runDry validates each).
func FuzzReader(f *testing.F) {
	seeds := []string{
		"eid,iccid,imei\n" + eids[0] + "," + iccids[0] + "," + imeis[0] + "\n",
		"\ufefficcid;account\r\n" + iccids[1] + ";" + acct + "\r\n",
		"imei\t\"x\"\"y\"\r" + imeis[2] + "\t\"open\n\n",
		"# c\n\n,,,\niccid\n8.9148E+19\n" + iccids[3] + ".0\n",
		"sim,notes\n\"" + iccids[4] + "\",\"a\nb\nc\"\n\"\n",
		"iccid\n" + iccids[5] + "\n" + iccids[5] + "\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got := runDry(t, string(data), Options{Account: acct, JobSize: 3})
		if got.err != nil {
			return
		}
		r := got.res
		if r.Rejected > r.Rows || r.Devices+r.Rejected+r.Duplicates != r.Rows {
			t.Fatalf("counts do not add up: %+v", r)
		}
		for _, j := range got.rejs {
			if j.Line < 1 || j.Reason == "" || j.Code == "" {
				t.Fatalf("bad report line %+v", j)
			}
		}
	})
}
