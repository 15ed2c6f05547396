package importer

import (
	"hash/maphash"
	"sort"

	"github.com/tsfallback/tsfallback/model"
)

// seenSet remembers every identifier accepted in a run, to drop repeats.
//
// It is an open-addressing hash set of 64-bit hashes, split into segments
// of segSlots slots that each split in two when they fill up (extendible
// hashing), so that growing never holds an old and a new copy of the whole
// table at once. A slot is 12 bytes (the hash and the device's ordinal),
// and segments run between 3/8 and 3/4 full: 16 to 32 bytes an identifier,
// about 50 to 100 MB for a million devices with three identifiers each
// (a run's identifiers fill the segments evenly, so where a count falls
// between two rounds of splits decides). Each accepted device adds 4 bytes
// for the line of its first sighting.
//
// The segments live outside the Go heap where the platform allows (see
// alloc_unix.go): the garbage collector lets the heap grow to about twice
// what is live, and a table that is most of the live memory would double
// the import's peak for nothing, as it holds no pointers.
//
// Two different identifiers collide with a chance of about n²/2^65 for n
// identifiers (below one in a million at ten million): the later one would
// be reported as a duplicate and not published, so a collision is visible
// in the report, not silent.
//
// Limitation: repeats across runs are not detected, and a run holds at
// most 2^31 devices.
type seenSet struct {
	seeds [3]maphash.Seed // per identifier kind
	dir   []*segment      // indexed by the top depth bits of a hash
	depth uint

	lines  []uint32    // line of each accepted device, by ordinal
	starts []fileStart // where each file's ordinals begin
	n      int         // identifiers held
}

type fileStart struct {
	ord  uint32
	file int
}

const (
	segBits  = 14
	segSlots = 1 << segBits
	// segMax is the count at which a segment splits: linear probing
	// stays short up to three quarters full.
	segMax = segSlots * 3 / 4
	// reportedBit, in a slot's value, marks an identifier whose first
	// repeat was already reported.
	reportedBit = 1 << 31
)

// segment is one open-addressing table; a key of 0 is an empty slot.
type segment struct {
	depth uint // how many top hash bits all its keys share
	n     int
	keys  []uint64
	vals  []uint32 // device ordinal | reportedBit
	free  func()
}

func newSeenSet() *seenSet {
	s := &seenSet{}
	for i := range s.seeds {
		s.seeds[i] = maphash.MakeSeed()
	}
	s.dir = []*segment{newSegment(0)}
	return s
}

func newSegment(depth uint) *segment {
	keys, vals, free := allocSlots(segSlots)
	return &segment{depth: depth, keys: keys, vals: vals, free: free}
}

func (s *seenSet) hash(kind, id string) uint64 {
	k := 0
	switch kind {
	case model.KindICCID:
		k = 1
	case model.KindIMEI:
		k = 2
	}
	h := maphash.String(s.seeds[k], id)
	if h == 0 {
		h = 1 // 0 marks an empty slot
	}
	return h
}

func (s *seenSet) segment(h uint64) *segment { return s.dir[h>>(64-s.depth)] }

// find returns the slot of h in g, or of the empty slot where it belongs.
func (g *segment) find(h uint64) (int, bool) {
	for i := int(h & (segSlots - 1)); ; i = (i + 1) & (segSlots - 1) {
		switch g.keys[i] {
		case h:
			return i, true
		case 0:
			return i, false
		}
	}
}

// lookup returns where the identifier was first accepted, and whether this
// is the first repeat (so the caller reports it once).
func (s *seenSet) lookup(kind, id string) (file, line int, seen, first bool) {
	h := s.hash(kind, id)
	g := s.segment(h)
	i, ok := g.find(h)
	if !ok {
		return 0, 0, false, false
	}
	v := g.vals[i]
	first = v&reportedBit == 0
	g.vals[i] = v | reportedBit
	ord := v &^ reportedBit
	return s.fileOf(ord), int(s.lines[ord]), true, first
}

// add records the identifiers of one accepted device, first seen at line
// of file (files are added in order).
func (s *seenSet) add(ids []model.DeviceID, file, line int) {
	ord := uint32(len(s.lines))
	if ord >= reportedBit {
		// Limitation: past 2^31 devices repeats are no longer detected.
		return
	}
	if n := len(s.starts); n == 0 || s.starts[n-1].file != file {
		s.starts = append(s.starts, fileStart{ord: ord, file: file})
	}
	s.lines = append(s.lines, uint32(line))
	for _, id := range ids {
		s.insert(s.hash(id.Kind, id.ID), ord)
	}
}

func (s *seenSet) insert(h uint64, ord uint32) {
	for {
		g := s.segment(h)
		if g.n >= segMax {
			s.split(g)
			continue
		}
		i, ok := g.find(h)
		if ok {
			return // the same identifier twice in one row
		}
		g.keys[i], g.vals[i] = h, ord
		g.n++
		s.n++
		return
	}
}

// split replaces g by two segments that tell its keys apart by one more
// top bit, doubling the directory first when g already uses all its bits.
func (s *seenSet) split(g *segment) {
	if g.depth == s.depth {
		dir := make([]*segment, 2*len(s.dir))
		for i := range dir {
			dir[i] = s.dir[i>>1]
		}
		s.dir = dir
		s.depth++
	}
	halves := [2]*segment{newSegment(g.depth + 1), newSegment(g.depth + 1)}
	for i, h := range g.keys {
		if h == 0 {
			continue
		}
		dst := halves[h>>(63-g.depth)&1]
		j, _ := dst.find(h)
		dst.keys[j], dst.vals[j] = h, g.vals[i]
		dst.n++
	}
	// The directory entries of g are consecutive; the bit that tells the
	// halves apart is the next one below g's depth.
	shift := s.depth - g.depth - 1
	for i, d := range s.dir {
		if d == g {
			s.dir[i] = halves[i>>shift&1]
		}
	}
	g.free()
}

func (s *seenSet) fileOf(ord uint32) int {
	i := sort.Search(len(s.starts), func(i int) bool { return s.starts[i].ord > ord })
	return s.starts[i-1].file
}

func (s *seenSet) len() int { return s.n }

// release returns the segments' memory; the set is unusable afterwards.
func (s *seenSet) release() {
	done := map[*segment]bool{}
	for _, g := range s.dir {
		if !done[g] {
			done[g] = true
			g.free()
		}
	}
	s.dir = nil
}
