package importer

import (
	"fmt"
	"testing"

	"github.com/tsfallback/tsfallback/model"
)

// TestSeenSetGrows fills the set through many segment splits and checks
// that every identifier keeps its first sighting and nothing else is seen.
func TestSeenSetGrows(t *testing.T) {
	s := newSeenSet()
	defer s.release()
	const devices = 60000 // three identifiers each: about 15 splits
	id := func(kind string, i int) model.DeviceID {
		return model.DeviceID{Kind: kind, ID: fmt.Sprintf("%020d", i)}
	}
	for i := range devices {
		file := 0
		if i >= devices/2 {
			file = 3
		}
		s.add([]model.DeviceID{id(model.KindEID, i), id(model.KindICCID, i),
			id(model.KindIMEI, i)}, file, i+2)
	}
	if s.len() != 3*devices {
		t.Fatalf("len %d, want %d", s.len(), 3*devices)
	}
	for i := range devices {
		for _, kind := range []string{model.KindEID, model.KindICCID, model.KindIMEI} {
			d := id(kind, i)
			file, line, seen, first := s.lookup(d.Kind, d.ID)
			wantFile := 0
			if i >= devices/2 {
				wantFile = 3
			}
			if !seen || !first || line != i+2 || file != wantFile {
				t.Fatalf("%s %d: file %d line %d seen %v first %v", kind, i, file, line,
					seen, first)
			}
		}
	}
	// The second lookup of an identifier is no longer its first repeat.
	if _, _, seen, first := s.lookup(model.KindEID, id(model.KindEID, 7).ID); !seen || first {
		t.Errorf("second repeat: seen %v first %v", seen, first)
	}
	// The same digits under another kind are another identifier.
	if _, _, seen, _ := s.lookup(model.KindEID, id(model.KindEID, devices).ID); seen {
		t.Error("an identifier never added is seen")
	}

	segs := map[*segment]bool{}
	for _, g := range s.dir {
		segs[g] = true
	}
	perID := float64(len(segs)*segSlots*12) / float64(s.len())
	if perID > 32 {
		t.Errorf("%.1f bytes an identifier, want at most 32", perID)
	}
}
