//go:build unix

// Command bench-import measures `tsfallback import` against raw JetStream
// publishing on the same machine: it imports a generated CSV of -rows
// devices into a fresh embedded JetStream server, then publishes the very
// job messages that import produced (same bodies, same count, same
// Nats-Msg-Id headers) with jetstream.PublishMsgAsync and the same bound on
// pending acks into another fresh server, and prints rows per second, the
// peak memory of each and their ratio, per run and as medians.
//
// Each side runs in a child process, so that its peak resident memory
// (VmHWM, read by the child from /proc at its end) is its own and not the
// server's, which stays in this process:
//
//	go run ./scripts/bench-import -rows 1000000 -runs 3
//
// It reads peak memory the Unix way, so it builds on Unix systems only.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/importer"
	"github.com/tsfallback/tsfallback/queue"
)

const (
	account  = "0000123456-00001"
	childEnv = "BENCH_IMPORT_CHILD"
	// timeout bounds each child, so a hang ends the benchmark.
	timeout = 10 * time.Minute
)

// childResult is what a child prints on its standard output.
type childResult struct {
	Rows     int     `json:"rows"`
	Messages int     `json:"messages"`
	Seconds  float64 `json:"seconds"`
	// PeakKiB is the child's peak resident memory (VmHWM), 0 when
	// unknown.
	PeakKiB int64 `json:"peakKiB"`
	// SpilledBytes went to the duplicate check's temporary file.
	SpilledBytes int64 `json:"spilledBytes"`
}

func main() {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := child(mode, os.Args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "bench-import %s: %v\n", mode, err)
			os.Exit(1)
		}
		return
	}
	rows := flag.Int("rows", 1_000_000, "devices (rows) in the generated CSV")
	runs := flag.Int("runs", 3, "runs of each side; medians are reported")
	pending := flag.Int("max-pending", importer.DefaultMaxPending, "publishes awaiting their ack, both sides")
	jobSize := flag.Int("job-size", 1000, "devices per job")
	dedupMB := flag.Int("dedup-memory-mb", importer.DefaultDedupMemoryMB,
		"memory budget of the import's duplicate check (TSFB_IMPORT_DEDUP_MEMORY_MB)")
	flag.Parse()
	if err := bench(*rows, *runs, *pending, *jobSize, *dedupMB); err != nil {
		fmt.Fprintf(os.Stderr, "bench-import: %v\n", err)
		os.Exit(1)
	}
}

type sample struct {
	seconds    float64
	rowsPerSec float64
	peakMB     float64
	spilledMB  float64
}

func bench(rows, runs, pending, jobSize, dedupMB int) error {
	dir, err := os.MkdirTemp("", "bench-import-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	csvPath := filepath.Join(dir, "devices.csv")
	jobsPath := filepath.Join(dir, "jobs.bin")
	if err := writeSample(csvPath, rows); err != nil {
		return err
	}
	st, _ := os.Stat(csvPath)
	fmt.Printf("bench-import: %d rows (%.1f MB of CSV), job size %d, max pending %d, "+
		"duplicate check %d MiB, %d runs\n",
		rows, float64(st.Size())/1e6, jobSize, pending, dedupMB, runs)

	var imp, raw []sample
	for i := range runs {
		s, msgs, err := side(dir, "import", pending, csvPath, fmt.Sprint(jobSize), fmt.Sprintf("bench%d", i),
			fmt.Sprint(dedupMB))
		if err != nil {
			return err
		}
		if i == 0 {
			// The import's own messages become the raw side's input.
			if err := dumpJobs(dir, csvPath, jobsPath, pending, jobSize); err != nil {
				return err
			}
		}
		imp = append(imp, s)
		r, rawMsgs, err := side(dir, "raw", pending, jobsPath)
		if err != nil {
			return err
		}
		if rawMsgs != msgs {
			return fmt.Errorf("raw side stored %d messages, the import %d", rawMsgs, msgs)
		}
		// The raw side published the same jobs, so it carried as many rows.
		r.rowsPerSec = float64(rows) / r.seconds
		raw = append(raw, r)
		fmt.Printf("run %d: import %8.0f rows/s %6.1f MB peak (%.0f MB spilled) | raw publish %8.0f rows/s "+
			"%6.1f MB peak | ratio %.2f\n", i+1, s.rowsPerSec, s.peakMB, s.spilledMB, r.rowsPerSec,
			r.peakMB, s.rowsPerSec/r.rowsPerSec)
	}
	mi, mr := median(imp), median(raw)
	fmt.Printf("median: import %.0f rows/s, %.1f MB peak RSS; raw JetStream async publish %.0f rows/s, "+
		"%.1f MB peak RSS; import/raw throughput ratio %.2f\n",
		mi.rowsPerSec, mi.peakMB, mr.rowsPerSec, mr.peakMB, mi.rowsPerSec/mr.rowsPerSec)
	return nil
}

func median(s []sample) sample {
	r := slices.Clone(s)
	slices.SortFunc(r, func(a, b sample) int { return int(a.rowsPerSec - b.rowsPerSec) })
	m := r[len(r)/2]
	p := make([]float64, len(s))
	for i, x := range s {
		p[i] = x.peakMB
	}
	slices.Sort(p)
	m.peakMB = p[len(p)/2]
	return m
}

func writeSample(path string, rows int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := importer.WriteSample(f, rows, 1); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// side starts a fresh embedded server, runs one child against it and
// returns its rate, its peak RSS and the messages the stream holds after.
func side(dir, mode string, pending int, args ...string) (sample, int, error) {
	store, err := os.MkdirTemp(dir, "nats-")
	if err != nil {
		return sample{}, 0, err
	}
	defer os.RemoveAll(store)
	ns, url, err := queue.StartEmbedded("127.0.0.1:0", store)
	if err != nil {
		return sample{}, 0, err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bus, err := queue.Open(ctx, queue.Config{URL: url}, "bench-import", zap.NewNop())
	if err != nil {
		return sample{}, 0, err
	}
	defer bus.Close()

	self, err := os.Executable()
	if err != nil {
		return sample{}, 0, err
	}
	cmd := exec.CommandContext(ctx, self, append([]string{url, fmt.Sprint(pending)}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return sample{}, 0, fmt.Errorf("%s child: %w", mode, err)
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		return sample{}, 0, fmt.Errorf("%s child printed %q: %w", mode, out, err)
	}
	peak := res.PeakKiB
	if peak == 0 {
		// getrusage's ru_maxrss of a child also counts the parent's peak
		// before the exec on Linux, so it is only the fallback.
		ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		if !ok {
			return sample{}, 0, errors.New("no peak memory for the child on this platform")
		}
		peak = int64(ru.Maxrss)
	}
	stream, err := bus.JS.Stream(ctx, queue.StreamJobs)
	if err != nil {
		return sample{}, 0, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return sample{}, 0, err
	}
	s := sample{
		seconds:    res.Seconds,
		rowsPerSec: float64(res.Rows) / res.Seconds,
		peakMB:     float64(peak) * 1024 / 1e6,
		spilledMB:  float64(res.SpilledBytes) / 1e6,
	}
	return s, int(info.State.Msgs), nil
}

// dumpJobs imports once more into a fresh server and writes every stored
// job message (its Nats-Msg-Id and body) to path, length-prefixed.
func dumpJobs(dir, csvPath, path string, pending, jobSize int) error {
	store, err := os.MkdirTemp(dir, "nats-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(store)
	ns, url, err := queue.StartEmbedded("127.0.0.1:0", store)
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bus, err := queue.Open(ctx, queue.Config{URL: url}, "bench-import-dump", zap.NewNop())
	if err != nil {
		return err
	}
	defer bus.Close()
	im, err := importer.New(bus.NC, importer.Config{MaxPending: pending}, nil)
	if err != nil {
		return err
	}
	if _, err := im.Run(ctx, importer.Options{Files: []string{csvPath}, Account: account,
		JobSize: jobSize, RunID: "bench"}, nil, nil); err != nil {
		return err
	}
	stream, err := bus.JS.Stream(ctx, queue.StreamJobs)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			return fmt.Errorf("reading job message %d: %w", seq, err)
		}
		writeChunk(w, []byte(m.Header.Get(jetstream.MsgIDHeader)))
		writeChunk(w, m.Data)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

func writeChunk(w *bufio.Writer, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	w.Write(n[:])
	w.Write(b)
}

func readChunk(r *bufio.Reader) ([]byte, error) {
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint32(n[:]))
	_, err := io.ReadFull(r, b)
	return b, err
}

// child runs one side: args are the server URL, the max pending, then the
// mode's own arguments.
func child(mode string, args []string) error {
	if len(args) < 3 {
		return errors.New("child: missing arguments")
	}
	url := args[0]
	var pending int
	fmt.Sscan(args[1], &pending)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var res childResult
	var err error
	switch mode {
	case "import":
		res, err = childImport(ctx, url, pending, args[2:])
	case "raw":
		res, err = childRaw(ctx, url, pending, args[2])
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}
	res.PeakKiB = peakKiB()
	return json.NewEncoder(os.Stdout).Encode(res)
}

func childImport(ctx context.Context, url string, pending int, args []string) (childResult, error) {
	if len(args) < 4 {
		return childResult{}, errors.New("import: want CSV, job size, run id, dedup MiB")
	}
	var jobSize, dedupMB int
	fmt.Sscan(args[1], &jobSize)
	fmt.Sscan(args[3], &dedupMB)
	// Connected the way the import command connects.
	bus, err := queue.Open(ctx, queue.Config{URL: url}, "bench-import", zap.NewNop())
	if err != nil {
		return childResult{}, err
	}
	defer bus.Close()
	im, err := importer.New(bus.NC, importer.Config{MaxPending: pending, DedupMemoryMB: dedupMB}, nil)
	if err != nil {
		return childResult{}, err
	}
	r, err := im.Run(ctx, importer.Options{Files: []string{args[0]}, Account: account,
		JobSize: jobSize, RunID: args[2]}, nil, nil)
	if err != nil {
		return childResult{}, err
	}
	if r.Rejected > 0 || r.Duplicates > 0 || r.Devices != r.Rows {
		return childResult{}, fmt.Errorf("import result %+v: want every row published", r)
	}
	return childResult{Rows: r.Rows, Messages: r.Jobs, Seconds: r.Seconds,
		SpilledBytes: r.DedupSpilledBytes}, nil
}

// childRaw publishes the dumped job messages as a plain client would:
// PublishMsgAsync bounded by the client's max pending, every ack checked.
func childRaw(ctx context.Context, url string, pending int, path string) (childResult, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return childResult{}, err
	}
	defer nc.Close()
	// Acks are checked by the error handler rather than by keeping every
	// future, which would keep every message in memory.
	var failed atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(pending),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) {
			failed.Add(1)
		}))
	if err != nil {
		return childResult{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return childResult{}, err
	}
	defer f.Close()

	start := time.Now()
	r := bufio.NewReader(f)
	subject := queue.JobSubject(account)
	n := 0
	for {
		id, err := readChunk(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return childResult{}, err
		}
		body, err := readChunk(r)
		if err != nil {
			return childResult{}, err
		}
		m := nats.NewMsg(subject)
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, string(id))
		if _, err := js.PublishMsgAsync(m); err != nil {
			return childResult{}, fmt.Errorf("publishing: %w", err)
		}
		n++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return childResult{}, ctx.Err()
	}
	secs := time.Since(start).Seconds()
	if k := failed.Load(); k > 0 {
		return childResult{}, fmt.Errorf("%d of %d publishes failed", k, n)
	}
	return childResult{Messages: n, Seconds: secs}, nil
}

// peakKiB reads the process's own peak resident memory from /proc (Linux).
func peakKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kib int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib)
			return kib
		}
	}
	return 0
}
