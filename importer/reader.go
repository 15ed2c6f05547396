package importer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits of the row reader. They keep memory flat whatever the input.
const (
	// MaxLineBytes is the longest physical line read; a longer one is
	// reported as malformed and skipped.
	MaxLineBytes = 64 << 10
	// MaxRecordLines is how many physical lines one quoted field may span
	// before the row is declared malformed and its lines are read again.
	MaxRecordLines = 16
)

// ErrUTF16 is returned for a file that starts with a UTF-16 byte order
// mark, which spreadsheets write for "Unicode text" exports.
var ErrUTF16 = errors.New("importer: file is UTF-16; save it as CSV UTF-8")

// record is one row. Fields alias the reader's buffers and are valid until
// the next call to next.
type record struct {
	line   int
	fields [][]byte
	// bad is non-empty when the row could not be parsed.
	bad string
}

type physLine struct {
	no      int
	text    []byte
	tooLong bool // past MaxLineBytes; text dropped
}

// rowReader splits a byte stream into rows. It works on normalized line
// ends (see newlineReader), so a physical line ends at '\n' only.
type rowReader struct {
	br  *bufio.Reader
	sep byte // 0 until detected

	lineNo  int
	pending []physLine // lines to read again, after a malformed row
	cont    []physLine // copies of continuation lines of the current row
	buf     []byte
	ends    []int
	fields  [][]byte
	eof     bool
}

// newRowReader reads r, which must already have its byte order mark
// removed. sep 0 means detect from the first row.
func newRowReader(r io.Reader, sep byte) *rowReader {
	return &rowReader{
		br:  bufio.NewReaderSize(&newlineReader{r: r}, MaxLineBytes+1),
		sep: sep,
	}
}

// readLine returns the next physical line without its '\n'.
func (rr *rowReader) readLine() (l physLine, err error) {
	if n := len(rr.pending); n > 0 {
		l = rr.pending[0]
		rr.pending = rr.pending[1:]
		return l, nil
	}
	if rr.eof {
		return l, io.EOF
	}
	tooLong := false
	text, err := rr.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Skip to the end of the line, keeping nothing.
		for errors.Is(err, bufio.ErrBufferFull) {
			_, err = rr.br.ReadSlice('\n')
		}
		tooLong = true
		text = nil
	}
	switch {
	case err == io.EOF:
		rr.eof = true
		if len(text) == 0 && !tooLong {
			return l, io.EOF
		}
	case err != nil:
		return l, err
	}
	rr.lineNo++
	text = bytes.TrimSuffix(text, []byte{'\n'})
	return physLine{no: rr.lineNo, text: text, tooLong: tooLong}, nil
}

// next returns the next row that is neither blank nor a comment, or
// io.EOF.
func (rr *rowReader) next() (record, error) {
	for {
		l, err := rr.readLine()
		if err != nil {
			return record{}, err
		}
		if l.tooLong {
			return record{line: l.no, bad: fmt.Sprintf("line longer than %d bytes", MaxLineBytes)}, nil
		}
		t := bytes.TrimLeft(l.text, " \t")
		if len(t) == 0 || t[0] == '#' {
			continue
		}
		if rr.sep == 0 {
			rr.sep = detectSeparator(l.text)
		}
		rec, err := rr.parse(l)
		if err != nil {
			return record{}, err
		}
		if rec.bad == "" && blank(rec.fields) {
			continue
		}
		return rec, nil
	}
}

func blank(fields [][]byte) bool {
	for _, f := range fields {
		if len(f) > 0 {
			return false
		}
	}
	return true
}

// parse splits a row that starts at first. Quoted fields may continue on
// following lines, up to MaxRecordLines.
func (rr *rowReader) parse(first physLine) (record, error) {
	rr.buf = rr.buf[:0]
	rr.ends = rr.ends[:0]
	rr.cont = rr.cont[:0]
	sep := rr.sep
	line := first.text
	inQuote, atStart := false, true

	endField := func() {
		rr.ends = append(rr.ends, len(rr.buf))
		atStart = true
	}
	for {
		for i := 0; i < len(line); i++ {
			c := line[i]
			switch {
			case inQuote:
				if c != '"' {
					rr.buf = append(rr.buf, c)
				} else if i+1 < len(line) && line[i+1] == '"' {
					rr.buf = append(rr.buf, '"')
					i++
				} else {
					inQuote = false
				}
			case c == sep:
				endField()
			case atStart && (c == ' ' || c == '\t'):
				// Spaces before an opening quote do not count.
			case atStart && c == '"':
				inQuote, atStart = true, false
			default:
				// Text after a closing quote, or a quote inside an
				// unquoted field, is kept as it is: validation names it.
				atStart = false
				rr.buf = append(rr.buf, c)
			}
		}
		if !inQuote {
			break
		}
		l, err := rr.readLine()
		if err != nil && err != io.EOF {
			return record{}, err
		}
		if err == io.EOF || l.tooLong || len(rr.cont)+2 > MaxRecordLines {
			// Give back the swallowed lines, so that one stray quote
			// costs one row, not the rest of the file.
			back := append([]physLine(nil), rr.cont...)
			if err == nil {
				l.text = bytes.Clone(l.text)
				back = append(back, l)
			}
			rr.pending = append(back, rr.pending...)
			return record{line: first.no, bad: "quoted field not closed on this line"}, nil
		}
		l.text = bytes.Clone(l.text)
		rr.cont = append(rr.cont, l)
		rr.buf = append(rr.buf, '\n')
		line = l.text
	}
	endField()

	rr.fields = rr.fields[:0]
	start := 0
	for _, end := range rr.ends {
		rr.fields = append(rr.fields, bytes.TrimSpace(rr.buf[start:end]))
		start = end
	}
	return record{line: first.no, fields: rr.fields}, nil
}

// detectSeparator picks the separator that occurs most often outside
// quotes in the header line: comma, semicolon or tab, comma on a tie.
func detectSeparator(line []byte) byte {
	var n [3]int
	cands := [3]byte{',', ';', '\t'}
	inQuote := false
	for _, c := range line {
		if c == '"' {
			inQuote = !inQuote
			continue
		}
		if inQuote {
			continue
		}
		for i, s := range cands {
			if c == s {
				n[i]++
			}
		}
	}
	best := 0
	for i := 1; i < len(n); i++ {
		if n[i] > n[best] {
			best = i
		}
	}
	return cands[best]
}

// newlineReader turns CRLF and bare CR line ends into LF, so that the rest
// of the reader, and the line numbers, see one kind of line end.
type newlineReader struct {
	r  io.Reader
	cr bool // the last byte returned was a CR turned into LF
}

func (n *newlineReader) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for i := 0; i < k; i++ {
			b := p[i]
			if n.cr {
				n.cr = false
				if b == '\n' {
					continue
				}
			}
			if b == '\r' {
				n.cr = true
				b = '\n'
			}
			p[j] = b
			j++
		}
		// A chunk that was only the LF of a CRLF gives nothing; read on
		// rather than return an empty read.
		if j > 0 || err != nil || k == 0 {
			return j, err
		}
	}
}

// stripBOM removes a UTF-8 byte order mark and refuses UTF-16.
func stripBOM(br *bufio.Reader) error {
	b, _ := br.Peek(3)
	switch {
	case bytes.HasPrefix(b, []byte{0xEF, 0xBB, 0xBF}):
		_, _ = br.Discard(3)
	case bytes.HasPrefix(b, []byte{0xFF, 0xFE}), bytes.HasPrefix(b, []byte{0xFE, 0xFF}):
		return ErrUTF16
	}
	return nil
}
