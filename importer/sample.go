package importer

import (
	"bufio"
	"fmt"
	"io"
	"math/bits"
	"math/rand/v2"

	"github.com/tsfallback/tsfallback/model"
)

// serialSpace is the count of 12-digit serials in a sample ICCID or IMEI.
const serialSpace = 1_000_000_000_000

// WriteSample writes a CSV of n valid, distinct devices (eid, iccid, imei),
// the same for the same seed, for the demo and for benchmarks. It has no
// account column: the import's account option applies.
func WriteSample(w io.Writer, n int, seed uint64) error {
	if n < 0 || int64(n) > serialSpace {
		return fmt.Errorf("importer: sample of %d devices", n)
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	// Random 12-digit serials collide within a million devices (birthday
	// bound), which would make the sample's devices fewer than n. An
	// affine walk with a stride coprime to 10^12 never repeats.
	iccid := newSerialWalk(rng)
	imei := newSerialWalk(rng)

	bw := bufio.NewWriter(w)
	if _, err := bw.WriteString("eid,iccid,imei\n"); err != nil {
		return fmt.Errorf("writing the sample: %w", err)
	}
	for i := range n {
		d := model.RandomDevice(rng)
		ic := fmt.Sprintf("8914800%012d", iccid.at(uint64(i)))
		im := fmt.Sprintf("35%012d", imei.at(uint64(i)))
		_, err := fmt.Fprintf(bw, "%s,%s%c,%s%c\n", d.ID(model.KindEID),
			ic, model.LuhnDigit(ic), im, model.LuhnDigit(im))
		if err != nil {
			return fmt.Errorf("writing the sample: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the sample: %w", err)
	}
	return nil
}

type serialWalk struct{ offset, stride uint64 }

func newSerialWalk(rng *rand.Rand) serialWalk {
	stride := rng.Uint64N(serialSpace) | 1 // odd: coprime to 2
	if stride%5 == 0 {
		stride += 2 // coprime to 5 as well
	}
	return serialWalk{offset: rng.Uint64N(serialSpace), stride: stride % serialSpace}
}

func (s serialWalk) at(i uint64) uint64 {
	// i*stride needs up to 80 bits; its high half is below 10^12, as
	// bits.Div64 requires.
	hi, lo := bits.Mul64(i, s.stride)
	_, rem := bits.Div64(hi, lo, serialSpace)
	return (rem + s.offset) % serialSpace
}
