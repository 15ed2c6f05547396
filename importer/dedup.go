package importer

import "crypto/sha256"

// seenSet remembers every identifier accepted in a run, to drop repeats.
//
// Limitation: it lives in memory, one entry per identifier: a 16-byte
// hash and 8 bytes of first sighting, about 30 to 60 bytes with the map's
// overhead, so a million devices with three identifiers each cost roughly
// 100 to 180 MB. Fine up to a few million devices per run; larger imports
// should be split into runs, and repeats across runs are not detected.
type seenSet struct {
	m map[[16]byte]uint64
}

// reportedBit marks an entry whose first repeat was already reported.
const reportedBit = 1 << 63

func newSeenSet() *seenSet { return &seenSet{m: make(map[[16]byte]uint64)} }

func idHash(kind, id string) [16]byte {
	var buf [64]byte
	b := append(append(append(buf[:0], kind...), 0), id...)
	sum := sha256.Sum256(b)
	return [16]byte(sum[:16])
}

// lookup returns where the identifier was first accepted, and whether this
// is the first repeat (so the caller reports it once).
func (s *seenSet) lookup(kind, id string) (file, line int, seen, first bool) {
	h := idHash(kind, id)
	v, ok := s.m[h]
	if !ok {
		return 0, 0, false, false
	}
	first = v&reportedBit == 0
	if first {
		s.m[h] = v | reportedBit
	}
	return int(v >> 32 & 0x7fffffff), int(uint32(v)), true, first
}

func (s *seenSet) add(kind, id string, file, line int) {
	s.m[idHash(kind, id)] = uint64(file)<<32 | uint64(uint32(line))
}

func (s *seenSet) len() int { return len(s.m) }
