package importer

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"os"
	"sort"

	"github.com/tsfallback/tsfallback/model"
)

// seenSet remembers every identifier accepted in a run, to drop repeats,
// in memory that stays flat whatever the run's size.
//
// It is an open-addressing hash set of 64-bit hashes, split into segments
// of segSlots slots that each split in two when they fill up (extendible
// hashing), so that growing never holds an old and a new copy of the whole
// table at once. A slot is 12 bytes (the hash, and the row and the kinds of
// identifier of the device that had it), and segments run between 3/8 and 3/4 full: 16 to 32 bytes an
// identifier.
//
// At most maxResident segments are held in memory; the others are spilled
// to an unlinked temporary file and read and written a few slots at a
// time, through the page cache. A run whose identifiers fit the memory
// budget never touches the disk; a larger one costs about as much disk as
// it would have cost memory, and a few system calls for each identifier
// that falls in a spilled segment (segments fill evenly, so that is the
// share of the set beyond the budget).
//
// Resident segments live outside the Go heap where the platform allows
// (see alloc_unix.go): the garbage collector lets the heap grow to about
// twice what is live, and a table that is most of the live memory would
// double the import's peak for nothing, as it holds no pointers.
//
// Two different identifiers collide with a chance of about n²/2^65 for n
// identifiers (below one in a million at ten million): the later one would
// be reported as a duplicate and not published, so a collision is visible
// in the report, not silent.
//
// Limitation: repeats across runs are not detected, and past 2^29 lines
// (536 million) in one run, all files together, repeats are no longer
// detected either.
type seenSet struct {
	seeds [3]maphash.Seed // per identifier kind
	dir   []*segment      // indexed by the top depth bits of a hash
	depth uint

	maxResident int    // segments held in memory at most
	resident    int    // segments held in memory now
	spillDir    string // where the spill file goes; "" is os.TempDir
	spill       *os.File
	spillEnd    int64  // bytes of the spill file in use
	window      []byte // scratch for reading slots of a spilled segment
	whole       []byte // scratch for a whole spilled segment
	wholeKeys   []uint64
	wholeVals   []uint32

	// recent are the empty slots that the last lookups found, so that
	// adding the identifiers they did not find does not probe again.
	recent  [4]probe
	nrecent int

	// extra holds the kinds of identifier that later rows added to a
	// device (see alias), by position. Such rows are rare, so a map does;
	// a file made of nothing else would grow it by about 50 bytes a row.
	extra map[uint32]uint32

	// err, once set, is returned by every call: a failed split may leave
	// a segment half written.
	err error

	starts []fileStart // where each file's positions begin
	next   uint32      // the position after the last one added
	n      int         // identifiers held
}

// probe is where a lookup of h found the empty slot i of g, valid while
// g is unchanged (its version).
type probe struct {
	h   uint64
	g   *segment
	i   int
	ver uint64
}

// fileStart maps positions to the lines of one file: position = base+line.
type fileStart struct {
	first uint32 // the file's first position in the set
	base  uint32
	file  int
}

const (
	segBits  = 14
	segSlots = 1 << segBits
	// segMax is the count at which a segment splits: linear probing
	// stays short up to three quarters full.
	segMax = segSlots * 3 / 4
	// slotBytes is one slot in the spill file: the hash, then the value,
	// little-endian.
	slotBytes = 12
	segBytes  = segSlots * slotBytes
	// windowSlots are read at once from a spilled segment: a probe
	// sequence is seldom longer.
	windowSlots = 32
	// A slot's value is the position of the device's row (posBits) and
	// which kinds of identifier the device has (the top bits, KindBit).
	posBits = 29
	maxPos  = 1<<posBits - 1

	// DefaultDedupMemoryMB is the default memory budget of the
	// duplicate check, in MiB.
	DefaultDedupMemoryMB = 32
)

// segment is one open-addressing table; a key of 0 is an empty slot. It
// is resident (keys and vals in memory) or spilled (at off in the spill
// file).
type segment struct {
	depth uint // how many top hash bits all its keys share
	n     int
	keys  []uint64
	vals  []uint32 // kinds<<posBits | position
	free  func()
	off   int64
	ver   uint64 // counts writes, so that a probe knows it is still valid
}

func (g *segment) spilled() bool { return g.keys == nil }

// newSeenSet returns a set that holds at most memoryMB MiB of segments in
// memory (at least two) and spills the rest to a file in dir ("" for the
// system's temporary directory).
func newSeenSet(memoryMB int, dir string) *seenSet {
	s := &seenSet{maxResident: int(max(2, int64(memoryMB)<<20/segBytes)), spillDir: dir}
	for i := range s.seeds {
		s.seeds[i] = maphash.MakeSeed()
	}
	s.dir = []*segment{s.newResident(0)}
	return s
}

func (s *seenSet) newResident(depth uint) *segment {
	keys, vals, free := allocSlots(segSlots)
	s.resident++
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

// find returns the slot of h in g and its value, or the empty slot where
// h belongs.
func (s *seenSet) find(g *segment, h uint64) (int, uint32, bool, error) {
	if !g.spilled() {
		for i := int(h & (segSlots - 1)); ; i = (i + 1) & (segSlots - 1) {
			switch g.keys[i] {
			case h:
				return i, g.vals[i], true, nil
			case 0:
				return i, 0, false, nil
			}
		}
	}
	if s.window == nil {
		s.window = make([]byte, windowSlots*slotBytes)
	}
	for i := int(h & (segSlots - 1)); ; {
		// A window ends at the segment's end; the probe wraps to 0.
		n := min(windowSlots, segSlots-i)
		b := s.window[:n*slotBytes]
		if _, err := s.spill.ReadAt(b, g.off+int64(i)*slotBytes); err != nil {
			return 0, 0, false, s.spillErr("reading", err)
		}
		for j := range n {
			switch binary.LittleEndian.Uint64(b[j*slotBytes:]) {
			case h:
				return i + j, binary.LittleEndian.Uint32(b[j*slotBytes+8:]), true, nil
			case 0:
				return i + j, 0, false, nil
			}
		}
		i = (i + n) & (segSlots - 1)
	}
}

// set writes slot i of g.
func (s *seenSet) set(g *segment, i int, h uint64, v uint32) error {
	g.ver++
	if !g.spilled() {
		g.keys[i], g.vals[i] = h, v
		return nil
	}
	var b [slotBytes]byte
	binary.LittleEndian.PutUint64(b[:], h)
	binary.LittleEndian.PutUint32(b[8:], v)
	if _, err := s.spill.WriteAt(b[:], g.off+int64(i)*slotBytes); err != nil {
		return s.spillErr("writing", err)
	}
	return nil
}

func (s *seenSet) spillErr(op string, err error) error {
	return fmt.Errorf("duplicate check: %s its spill file in %s (set TMPDIR to a "+
		"writable directory with room, or raise TSFB_IMPORT_DEDUP_MEMORY_MB): %w",
		op, s.dirName(), err)
}

func (s *seenSet) dirName() string {
	if s.spillDir != "" {
		return s.spillDir
	}
	return os.TempDir()
}

// kindBit is the bit of an identifier kind in a device's kinds.
func kindBit(kind string) uint32 {
	switch kind {
	case model.KindEID:
		return 1
	case model.KindICCID:
		return 2
	case model.KindIMEI:
		return 4
	}
	return 0
}

// sighting is where a device was first accepted, and which kinds of
// identifier it had.
type sighting struct {
	file, line int
	kinds      uint32
	pos        uint32
	// filled are the kinds a later row filled in (see alias): the line
	// of the sighting does not show them.
	filled uint32
}

// lookup returns the first sighting of the device that had the
// identifier, if any.
func (s *seenSet) lookup(kind, id string) (sighting, bool, error) {
	if s.err != nil {
		return sighting{}, false, s.err
	}
	h := s.hash(kind, id)
	g := s.segment(h)
	i, v, ok, err := s.find(g, h)
	if err != nil || !ok {
		if err == nil {
			s.recent[s.nrecent%len(s.recent)] = probe{h: h, g: g, i: i, ver: g.ver}
			s.nrecent++
		}
		return sighting{}, false, err
	}
	pos := v & maxPos
	file, line := s.where(pos)
	return sighting{file: file, line: line, kinds: v>>posBits | s.extra[pos], pos: pos,
		filled: s.extra[pos]}, true, nil
}

// alias records identifiers that a later row gave a device already held
// (at pos, with kinds), of kinds the device did not have: from then on they
// find that device too, with all its kinds, so that a row with one of them
// alone is a duplicate, and one that gives any kind the device has another
// value is a conflict.
func (s *seenSet) alias(ids []model.DeviceID, pos, had uint32) error {
	if s.err != nil {
		return s.err
	}
	var added uint32
	for _, id := range ids {
		added |= kindBit(id.Kind)
	}
	if s.extra == nil {
		s.extra = map[uint32]uint32{}
	}
	s.extra[pos] |= added
	kinds := had | added
	for _, id := range ids {
		if err := s.insert(s.hash(id.Kind, id.ID), kinds<<posBits|pos); err != nil {
			s.err = err
			return err
		}
	}
	return nil
}

// add records the identifiers of one accepted device, first seen at line
// of file (files are added in order, lines in increasing order).
func (s *seenSet) add(ids []model.DeviceID, file, line int) error {
	if s.err != nil {
		return s.err
	}
	n := len(s.starts)
	newFile := n == 0 || s.starts[n-1].file != file
	var base int64
	if newFile {
		// The next position is the file's first; earlier lines of the
		// file map below it and are never added.
		base = max(0, int64(s.next)-int64(line))
	} else {
		base = int64(s.starts[n-1].base)
	}
	pos := base + int64(line)
	if pos > maxPos {
		// Limitation: past 2^29 lines repeats are no longer detected.
		return nil
	}
	if newFile {
		s.starts = append(s.starts, fileStart{first: uint32(pos), base: uint32(base), file: file})
	}
	s.next = uint32(pos) + 1
	var kinds uint32
	for _, id := range ids {
		kinds |= kindBit(id.Kind)
	}
	for _, id := range ids {
		if err := s.insert(s.hash(id.Kind, id.ID), kinds<<posBits|uint32(pos)); err != nil {
			s.err = err
			return err
		}
	}
	return nil
}

func (s *seenSet) insert(h uint64, v uint32) error {
	for {
		g := s.segment(h)
		if g.n >= segMax {
			if err := s.split(g); err != nil {
				return err
			}
			continue
		}
		i, ok := s.recentSlot(g, h)
		if !ok {
			var found bool
			var err error
			i, _, found, err = s.find(g, h)
			if err != nil || found {
				return err // found: the same identifier twice in one row
			}
		}
		if err := s.set(g, i, h, v); err != nil {
			return err
		}
		g.n++
		s.n++
		return nil
	}
}

// recentSlot returns the empty slot of g where a recent lookup found that
// h belongs, when g has not changed since.
func (s *seenSet) recentSlot(g *segment, h uint64) (int, bool) {
	for _, p := range s.recent {
		if p.h == h && p.g == g && p.ver == g.ver {
			return p.i, true
		}
	}
	return 0, false
}

// split replaces g by two segments that tell its keys apart by one more
// top bit, doubling the directory first when g already uses all its bits.
// The halves stay in memory while the budget allows and are spilled
// otherwise.
func (s *seenSet) split(g *segment) error {
	wasSpilled := g.spilled()
	keys, vals := g.keys, g.vals
	if wasSpilled {
		var err error
		if keys, vals, err = s.readWhole(g); err != nil {
			return err
		}
	}
	halves := [2]*segment{s.newResident(g.depth + 1), s.newResident(g.depth + 1)}
	for i, h := range keys {
		if h == 0 {
			continue
		}
		dst := halves[h>>(63-g.depth)&1]
		j := int(h & (segSlots - 1))
		for dst.keys[j] != 0 {
			j = (j + 1) & (segSlots - 1)
		}
		dst.keys[j], dst.vals[j] = h, vals[i]
		dst.n++
	}
	// g's memory is not yet given back, so one more than the budget is
	// resident here at most, or two while a resident g splits.
	reuse := int64(-1)
	if wasSpilled {
		reuse = g.off
	}
	for _, half := range halves {
		if s.resident-boolInt(!wasSpilled) <= s.maxResident {
			continue
		}
		if err := s.spillOut(half, reuse); err != nil {
			// g stays in the directory, but a spilled g may have been
			// overwritten by the first half: the caller marks the set
			// broken either way.
			for _, h := range halves {
				s.drop(h)
			}
			return err
		}
		reuse = -1
	}
	if g.depth == s.depth {
		dir := make([]*segment, 2*len(s.dir))
		for i := range dir {
			dir[i] = s.dir[i>>1]
		}
		s.dir = dir
		s.depth++
	}
	// The directory entries of g are consecutive; the bit that tells the
	// halves apart is the next one below g's depth.
	shift := s.depth - g.depth - 1
	for i, d := range s.dir {
		if d == g {
			s.dir[i] = halves[i>>shift&1]
		}
	}
	s.drop(g)
	return nil
}

// drop gives back the memory of g when it is resident; g is unusable
// afterwards.
func (s *seenSet) drop(g *segment) {
	if g.free != nil {
		g.free()
		s.resident--
	}
	g.keys, g.vals, g.free = nil, nil, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readWhole reads spilled segment g into scratch slices.
func (s *seenSet) readWhole(g *segment) ([]uint64, []uint32, error) {
	if s.whole == nil {
		s.whole = make([]byte, segBytes)
	}
	if _, err := s.spill.ReadAt(s.whole, g.off); err != nil {
		return nil, nil, s.spillErr("reading", err)
	}
	if s.wholeKeys == nil {
		s.wholeKeys, s.wholeVals = make([]uint64, segSlots), make([]uint32, segSlots)
	}
	keys, vals := s.wholeKeys, s.wholeVals
	for i := range keys {
		keys[i] = binary.LittleEndian.Uint64(s.whole[i*slotBytes:])
		vals[i] = binary.LittleEndian.Uint32(s.whole[i*slotBytes+8:])
	}
	return keys, vals, nil
}

// spillOut writes resident segment g to the spill file, at off when it is
// not negative and at the file's end otherwise, and frees its memory.
func (s *seenSet) spillOut(g *segment, off int64) error {
	if err := s.openSpill(); err != nil {
		return err
	}
	if s.whole == nil {
		s.whole = make([]byte, segBytes)
	}
	for i := range g.keys {
		binary.LittleEndian.PutUint64(s.whole[i*slotBytes:], g.keys[i])
		binary.LittleEndian.PutUint32(s.whole[i*slotBytes+8:], g.vals[i])
	}
	end := off < 0
	if end {
		off = s.spillEnd
	}
	if _, err := s.spill.WriteAt(s.whole, off); err != nil {
		return s.spillErr("writing", err)
	}
	if end {
		s.spillEnd += segBytes
	}
	s.drop(g)
	g.off = off
	return nil
}

// openSpill creates the spill file unless it is open. The importer calls
// it at the start of a run too, to warn early of a directory it cannot use.
func (s *seenSet) openSpill() error {
	if s.spill != nil {
		return nil
	}
	f, err := os.CreateTemp(s.spillDir, "tsfallback-dedup-*")
	if err != nil {
		return s.spillErr("creating", err)
	}
	// Unlinked at once where the platform allows, so that nothing is left
	// behind even by a killed import; release removes it elsewhere.
	_ = os.Remove(f.Name())
	s.spill = f
	return nil
}

// where maps a position back to its file and line.
func (s *seenSet) where(pos uint32) (file, line int) {
	i := sort.Search(len(s.starts), func(i int) bool { return s.starts[i].first > pos })
	st := s.starts[i-1]
	return st.file, int(pos - st.base)
}

func (s *seenSet) len() int { return s.n }

// spilledBytes is the size of the spill file.
func (s *seenSet) spilledBytes() int64 { return s.spillEnd }

// release returns the segments' memory and the spill file; the set is
// unusable afterwards.
func (s *seenSet) release() {
	for _, g := range s.dir {
		s.drop(g) // once: drop forgets the memory it gave back
	}
	s.dir = nil
	if s.spill != nil {
		name := s.spill.Name()
		_ = s.spill.Close()
		_ = os.Remove(name) // already gone where unlinking an open file works
		s.spill = nil
	}
}
