package importer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/tsfallback/tsfallback/model"
	"github.com/tsfallback/tsfallback/queue"
)

// checkEvery is how many rows pass between checks of the context and the
// progress clock.
const checkEvery = 256

// ErrNoAccount is returned for a file with no account column when
// Options.Account is empty.
var ErrNoAccount = errors.New("importer: no account: give --account or an account column")

// Importer reads CSV files into jobs and publishes them.
type Importer struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg Config
	log *zap.Logger

	// onJob, set by tests, sees every job of a dry run.
	onJob func(model.Job)
}

// New returns an Importer that publishes on nc. nc may be nil for an
// Importer that only does dry runs; with nc, a dry run also reads the run
// manifest, to tell what a real run with its run id would find.
func New(nc *nats.Conn, cfg Config, log *zap.Logger) (*Importer, error) {
	cfg = cfg.Defaulted()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	im := &Importer{nc: nc, cfg: cfg, log: log.Named("importer")}
	if nc != nil {
		// The client's own limit sits above ours (see publisher), so its
		// stall never turns into an error; the ack timeout makes a lost
		// ack an error instead of a hang.
		js, err := jetstream.New(nc,
			jetstream.WithPublishAsyncMaxPending(cfg.MaxPending+1),
			jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
		if err != nil {
			return nil, fmt.Errorf("opening JetStream: %w", err)
		}
		im.js = js
	}
	return im, nil
}

// settleWait is how long a run that failed still takes the acks of the
// jobs it sent, before it counts the rest as unconfirmed.
const settleWait = 2 * time.Second

// run is the state of one Run.
type run struct {
	opts   Options
	res    *Result
	seen   *seenSet
	batch  *batcher
	report *json.Encoder
	prog   *progress
	files  []string
	read   int64 // bytes read so far, for the progress bar
	// accepted counts the devices handed to the batcher.
	accepted int
}

// Run imports opts.Files, reading StdinName from stdin, and writes the
// summary to stdout when it is not nil. The Result is filled in even after
// a fatal error; ExitCode maps both to the command's exit status.
func (im *Importer) Run(ctx context.Context, opts Options, stdin io.Reader,
	stdout io.Writer) (Result, error) {
	start := time.Now()
	res := Result{DryRun: opts.DryRun, Rejections: map[string]int{}}
	opts, err := opts.defaulted()
	res.RunID = opts.RunID
	if err != nil {
		return res, err
	}
	if !opts.DryRun && im.js == nil {
		return res, fmt.Errorf("%w: no NATS connection for a real run", ErrOptions)
	}

	r := &run{opts: opts, res: &res, seen: newSeenSet(im.cfg.DedupMemoryMB, "")}
	defer r.seen.release()
	if err := r.seen.openSpill(); err != nil {
		// Only a run past the memory budget needs the file; the others
		// should not fail for it, but the operator hears of it now
		// rather than halfway through a large file.
		im.log.Warn("import_spill_unavailable", zap.Error(err))
	}
	var payload int64
	if im.nc != nil {
		payload = im.nc.MaxPayload()
	}
	pub := &publisher{js: im.js, log: im.log, maxPayload: payload, max: im.cfg.MaxPending,
		res: &res, dryRun: opts.DryRun, onJob: im.onJob}
	if im.js != nil {
		// queue.Open creates the manifest; without it (a bare server, or
		// a dry run before any real one) the import still works, only a
		// reused run id goes unnoticed. A dry run only reads it.
		kv, err := im.js.KeyValue(ctx, queue.BucketRuns)
		switch {
		case err == nil:
			pub.runs = kv
		case opts.DryRun && errors.Is(err, jetstream.ErrBucketNotFound):
		default:
			im.log.Warn("import_manifest_unavailable", zap.String("bucket", queue.BucketRuns), zap.Error(err))
		}
	}
	r.batch = &batcher{runID: opts.RunID, replyTo: opts.ReplyTo, size: opts.JobSize,
		pending: map[string][]model.Device{}, pub: pub}
	if opts.Report != nil {
		r.report = json.NewEncoder(opts.Report)
		r.report.SetEscapeHTML(false)
	}
	r.prog = newProgress(opts.Progress, opts.ProgressInterval, totalSize(opts.Files),
		func() int64 { return r.read })
	im.log.Info("import_started", zap.String("run_id", opts.RunID),
		zap.Strings("files", opts.Files), zap.Bool("dry_run", opts.DryRun),
		zap.Int("job_size", opts.JobSize))

	err = r.all(ctx, stdin, pub)
	if err != nil {
		// The run's ctx may be what ended it: the acks still count.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleWait)
		pub.settle(sctx, settleWait)
		cancel()
	}
	pub.close()
	if err != nil {
		res.DevicesNotSent = max(0, r.accepted-res.Devices-res.DevicesUnconfirmed)
	}
	res.Seconds = time.Since(start).Seconds()
	res.DedupSpilledBytes = r.seen.spilledBytes()
	r.prog.done(&res)
	if err != nil && !opts.DryRun && r.batch.n > 0 && !errors.Is(err, ErrRunReused) {
		err = fmt.Errorf("%w (run id %s: re-run with it to publish the rest; jobs "+
			"already published are not repeated)", err, opts.RunID)
	}
	if stdout != nil {
		if werr := res.WriteSummary(stdout); werr != nil && err == nil {
			err = fmt.Errorf("writing the summary: %w", werr)
		}
	}
	im.log.Info("import_finished", zap.String("run_id", opts.RunID), zap.Int("rows", res.Rows),
		zap.Int("devices", res.Devices), zap.Int("jobs", res.Jobs),
		zap.Int("rejected", res.Rejected), zap.Int("duplicates", res.Duplicates),
		zap.Int64("dedup_spilled_bytes", res.DedupSpilledBytes), zap.Bool("failed", err != nil))
	return res, err
}

func (r *run) all(ctx context.Context, stdin io.Reader, pub *publisher) error {
	for i, name := range r.opts.Files {
		r.files = append(r.files, name)
		r.res.Files++
		if err := r.file(ctx, i, name, stdin); err != nil {
			return err
		}
	}
	if err := r.batch.flush(ctx); err != nil {
		return err
	}
	return pub.drain(ctx)
}

// file imports one file.
func (r *run) file(ctx context.Context, idx int, name string, stdin io.Reader) error {
	var src io.Reader = stdin
	if name != StdinName {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("opening %s: %w", name, err)
		}
		defer f.Close()
		src = f
	} else if stdin == nil {
		return fmt.Errorf("%w: no standard input", ErrOptions)
	}
	br := bufio.NewReader(&countingReader{r: src, n: &r.read})
	if err := stripBOM(br); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	rows := newRowReader(br, byte(r.opts.Separator))

	rec, err := rows.next()
	if err == io.EOF {
		return fmt.Errorf("reading %s: %w: the file is empty, want a header row", name, ErrHeader)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if rec.bad != "" {
		return fmt.Errorf("reading %s: %w: line %d: %s", name, ErrHeader, rec.line, rec.bad)
	}
	h, err := parseHeader(rec.fields, rec.line)
	if err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	if h.account == nil && r.opts.Account == "" {
		return fmt.Errorf("reading %s: %w", name, ErrNoAccount)
	}

	for n := 0; ; n++ {
		if n%checkEvery == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("import interrupted in %s: %w", name, err)
			}
			r.prog.tick(r.res)
		}
		rec, err := rows.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading %s: %w", name, err)
		}
		if err := r.row(ctx, idx, h, rec); err != nil {
			return err
		}
	}
}

// row checks one data row and hands a good device to the batcher.
func (r *run) row(ctx context.Context, file int, h header, rec record) error {
	r.res.Rows++
	if rec.bad != "" {
		return r.rejectRow(rec.line, []Rejection{{Line: rec.line, Reason: rec.bad,
			Code: ReasonMalformed}})
	}
	var bad []Rejection
	ids := make([]model.DeviceID, 0, len(h.ids))
	for _, c := range h.ids {
		v := field(rec, c.index)
		if v == "" {
			continue
		}
		if code, reason := checkID(c.kind, v); code != "" {
			bad = append(bad, Rejection{Line: rec.line, Column: c.name, Value: v,
				Reason: reason, Code: code})
			continue
		}
		ids = append(ids, model.DeviceID{Kind: c.kind, ID: v})
	}
	if len(bad) == 0 && len(ids) == 0 {
		bad = append(bad, Rejection{Line: rec.line, Code: ReasonNoIdentifier,
			Reason: "no identifier: the eid, iccid and imei cells are all empty"})
	}
	account, rej := r.account(h, rec)
	if rej != nil {
		bad = append(bad, *rej)
	}
	if len(bad) > 0 {
		return r.rejectRow(rec.line, bad)
	}

	dup, conflict, err := r.repeat(file, h, rec.line, ids)
	switch {
	case err != nil:
		return fmt.Errorf("%s line %d: %w", r.fileName(file), rec.line, err)
	case conflict != nil:
		return r.rejectRow(rec.line, []Rejection{*conflict})
	case dup != nil:
		r.res.Duplicates++
		return r.write(*dup)
	}
	r.accepted++ // from here on the row is a device, sent or not
	if err := r.seen.add(ids, file, rec.line); err != nil {
		return fmt.Errorf("%s line %d: %w", r.fileName(file), rec.line, err)
	}
	return r.batch.add(ctx, account, model.Device{DeviceIDs: ids})
}

// repeat compares a good row with the devices accepted before it. A row
// whose identifiers all belong to one earlier device is a duplicate of it,
// also when it fills in a kind of identifier that device lacks. A row that
// shares an identifier with an earlier device but gives another value for
// a kind that device has, or that shares identifiers with two devices, is
// a conflict: the file gives one identifier to two devices, and which row
// is right cannot be told, so the row is rejected and the first one stands.
func (r *run) repeat(file int, h header, line int, ids []model.DeviceID) (dup, conflict *Rejection,
	err error) {
	var first sighting
	var firstID model.DeviceID
	found := false
	var fresh []model.DeviceID
	for _, id := range ids {
		sg, seen, err := r.seen.lookup(id.Kind, id.ID)
		switch {
		case err != nil:
			return nil, nil, err
		case !seen:
			fresh = append(fresh, id)
		case !found:
			first, firstID, found = sg, id, true
		case sg.pos != first.pos:
			return nil, &Rejection{Line: line, Column: columnName(h, id.Kind), Value: id.ID,
				Code: ReasonConflict, Reason: fmt.Sprintf("conflicting rows: the %s is that of the "+
					"device of %s, the %s that of the device of %s; not published: %s", firstID.Kind,
					r.where(file, first, ""), id.Kind, r.where(file, sg, ""), conflictHint)}, nil
		}
	}
	if !found {
		return nil, nil, nil
	}
	for _, id := range fresh {
		if first.kinds&kindBit(id.Kind) != 0 {
			return nil, &Rejection{Line: line, Column: columnName(h, id.Kind), Value: id.ID,
				Code: ReasonConflict, Reason: fmt.Sprintf("conflicting rows: the same %s as %s, "+
					"another %s; not published: %s", firstID.Kind, r.where(file, first, firstID.Kind),
					id.Kind, conflictHint)}, nil
		}
	}
	reason := fmt.Sprintf("duplicate: the same %s as %s, published once", firstID.Kind,
		r.where(file, first, firstID.Kind))
	if len(fresh) > 0 {
		// The row fills in kinds the device lacked: they are that
		// device's from now on, so that a later row with one of them is
		// not published as a device of its own.
		if err := r.seen.alias(fresh, first.pos, first.kinds); err != nil {
			return nil, nil, err
		}
		var kinds []string
		for _, id := range fresh {
			kinds = append(kinds, id.Kind)
		}
		reason += fmt.Sprintf(" with that row's identifiers; this row's %s is not sent, and is "+
			"taken as that device's", strings.Join(kinds, " and "))
	}
	return &Rejection{Line: line, Column: columnName(h, firstID.Kind), Value: firstID.ID,
		Code: ReasonDuplicate, Reason: reason}, nil, nil
}

const conflictHint = "find out which row is right, then import the fixed rows under a new run id"

// where names a first sighting for a row of file: its line, and its file
// when that is another. When the identifier of kind that the row shares
// was filled in by a later row, that line does not show it, so it names
// the device of the line.
func (r *run) where(file int, sg sighting, kind string) string {
	at := fmt.Sprintf("line %d", sg.line)
	if sg.file != file {
		at = fmt.Sprintf("%s line %d", r.fileName(sg.file), sg.line)
	}
	if kind != "" && sg.filled&kindBit(kind) != 0 {
		return "the device of " + at + " (a later row gave it that " + kind + ")"
	}
	return at
}

// fileName names file i for people.
func (r *run) fileName(i int) string {
	if r.files[i] == StdinName {
		return "standard input"
	}
	return r.files[i]
}

// account picks the row's account: its cell, else Options.Account.
func (r *run) account(h header, rec record) (string, *Rejection) {
	if h.account == nil {
		return r.opts.Account, nil
	}
	v := field(rec, h.account.index)
	rej := &Rejection{Line: rec.line, Column: h.account.name, Value: v}
	switch {
	case v == "" && r.opts.Account == "":
		rej.Code, rej.Reason = ReasonNoAccount,
			"no account: the cell is empty and no --account was given"
	case v == "":
		return r.opts.Account, nil
	case model.ValidateAccountName(v) != nil:
		rej.Code, rej.Reason = ReasonBadAccount,
			"not an account name: want 10 digits, a hyphen and 5 digits"
	case r.opts.Account != "" && v != r.opts.Account:
		rej.Code, rej.Reason = ReasonAccountMismatch, fmt.Sprintf("the row says account %s "+
			"but --account is %s", v, r.opts.Account)
	default:
		return v, nil
	}
	return "", rej
}

func (r *run) rejectRow(line int, bad []Rejection) error {
	r.res.Rejected++
	for _, b := range bad {
		r.res.Rejections[b.Code]++
		if err := r.write(b); err != nil {
			return err
		}
	}
	return nil
}

// write adds a line to the report.
func (r *run) write(rej Rejection) error {
	if r.report == nil {
		return nil
	}
	if name := r.files[len(r.files)-1]; name != StdinName {
		rej.File = name
	}
	rej.Value = reportValue(rej.Value)
	if err := r.report.Encode(rej); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}

func field(rec record, i int) string {
	if i >= len(rec.fields) {
		return ""
	}
	return string(rec.fields[i])
}

func columnName(h header, kind string) string {
	for _, c := range h.ids {
		if c.kind == kind {
			return c.name
		}
	}
	return kind
}

// totalSize sums the sizes of the regular files, for the progress bar; 0
// when any is unknown.
func totalSize(files []string) int64 {
	var n int64
	for _, f := range files {
		if f == StdinName {
			return 0
		}
		st, err := os.Stat(f)
		if err != nil || !st.Mode().IsRegular() {
			return 0
		}
		n += st.Size()
	}
	return n
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	*c.n += int64(k)
	return k, err
}
