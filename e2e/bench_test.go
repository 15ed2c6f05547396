//go:build unix

package e2e

import (
	"strconv"
	"testing"
)

// BenchmarkQuota reports how much of the API quota the deployment uses:
// "util" is the sustained accepted rate over R (see rate), "overshoot" the
// most requests the simulator accepted in any one second over R. Each
// iteration is a whole run (5,000 devices, 250 requests at R=20, about 15
// s), so run it with -benchtime=1x and -count for repeats, as
// scripts/bench-quota does.
func BenchmarkQuota(b *testing.B) {
	for _, workers := range []int{1, 3} {
		b.Run("workers="+strconv.Itoa(workers), func(b *testing.B) {
			var util, over float64
			for i := range b.N {
				b.StopTimer()
				c := newCluster(b, clusterConfig{Workers: workers, RPS: e2eRPS, Quiet: true})
				tl := c.follow()
				jobs := makeJobs("bench"+strconv.Itoa(i), e2eJobs, e2eJobSize)
				b.StartTimer()
				c.publish(jobs)
				c.waitCompleted(tl, len(jobs), runTimeout)
				b.StopTimer()
				u, o, st := c.report(b)
				if st.RateLimited > 0 {
					b.Logf("simulator sent %d 429s", st.RateLimited)
				}
				util += u
				over += o
			}
			b.ReportMetric(util/float64(b.N), "util")
			b.ReportMetric(over/float64(b.N), "overshoot")
		})
	}
}
