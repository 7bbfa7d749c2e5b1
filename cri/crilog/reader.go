package crilog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// OutputTimeFormat is the timestamp ReadOptions.Timestamps puts before each line:
// RFC 3339 with all nine fraction digits, kubelet's format for `kubectl logs --timestamps`
// (RFC3339Nano without trimming zeros, so the columns line up). The zone is the one
// the record was written with.
const OutputTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// ErrMalformed is wrapped by the errors of ParseLine.
var ErrMalformed = errors.New("malformed CRI log record")

// lookBehind is how far tailStart reads on, once it has counted its lines, for the
// beginnings of lines it cannot yet know are whole: a counted line whose stream has no
// earlier F record nearby may have P records further back, and a stream not met yet may
// have an unfinished line. Past lookBehind it gives up, and such a line is printed
// without its earlier chunks.
const lookBehind = 1 << 20

// followPoll is how often Follow looks for new records and for a rotation.
var followPoll = 100 * time.Millisecond

// followStarted, when set (by tests), is called once Follow has done its first read.
var followStarted func()

// followRefused, when set (by tests), is called when Follow cannot open a rotated-in file.
var followRefused func()

// followPolled, when set (by tests), is called after each look Follow takes, once it printed what it found.
var followPolled func()

// Entry is one record of a CRI log file.
type Entry struct {
	Time    time.Time
	Stream  string // Stdout or Stderr
	Partial bool   // tag P: the line continues in the next record of the same stream
	Content []byte // aliases the line given to ParseLine
}

// ParseLine parses one record, without its "\n" (a trailing "\n" is ignored). Like
// kubelet it accepts a tag with ":"-separated extensions ("F:x") and any RFC 3339
// timestamp; unlike kubelet it also accepts a record with empty content that lacks the
// space after the tag.
func ParseLine(line []byte) (Entry, error) {
	if n := len(line); n > 0 && line[n-1] == '\n' {
		line = line[:n-1]
	}
	if len(line) == 0 {
		return Entry{}, fmt.Errorf("%w: empty line", ErrMalformed)
	}
	sp := bytes.IndexByte(line, ' ')
	if sp < 0 {
		return Entry{}, fmt.Errorf("%w: no space after the timestamp in %q", ErrMalformed, clip(line))
	}
	t, err := time.Parse(time.RFC3339Nano, string(line[:sp]))
	if err != nil {
		return Entry{}, fmt.Errorf("%w: timestamp %q is not RFC 3339 (like 2006-01-02T15:04:05.999999999Z07:00)",
			ErrMalformed, clip(line[:sp]))
	}
	rest := line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp < 0 {
		return Entry{}, fmt.Errorf("%w: no space after the stream in %q", ErrMalformed, clip(line))
	}
	e := Entry{Time: t}
	switch string(rest[:sp]) {
	case Stdout:
		e.Stream = Stdout
	case Stderr:
		e.Stream = Stderr
	default:
		return Entry{}, fmt.Errorf("%w: stream %q is neither stdout nor stderr", ErrMalformed, clip(rest[:sp]))
	}
	rest = rest[sp+1:]
	tag := rest
	if sp = bytes.IndexByte(rest, ' '); sp >= 0 {
		tag, e.Content = rest[:sp], rest[sp+1:]
	} else {
		e.Content = rest[len(rest):]
	}
	if i := bytes.IndexByte(tag, ':'); i >= 0 {
		tag = tag[:i]
	}
	switch string(tag) {
	case "F":
	case "P":
		e.Partial = true
	default:
		return Entry{}, fmt.Errorf("%w: tag %q is neither F nor P", ErrMalformed, clip(tag))
	}
	return e, nil
}

func clip(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// ReadOptions select what ReadAll and Follow print.
type ReadOptions struct {
	// Tail prints only the last Tail lines (counted after joining partials); < 0 prints all.
	Tail int64
	// Timestamps prefixes each line with its timestamp (OutputTimeFormat) and a space.
	Timestamps bool
	// Streams is "" for both, or "stdout" or "stderr".
	Streams string
	// Since skips lines stamped before it.
	Since time.Time
}

// ReadAll writes the lines of the log file name to w, each followed by "\n". name is a
// path relative to root, opened as Open opens it: root by path, everything beneath it
// without following symlinks, and only a regular file.
//
// P chunks are joined with the rest of their line, also when records of the other
// stream come between them. A line is stamped with the time of its first record and
// is printed when its F record is read, so lines appear in the order they ended. A
// line still unfinished at the end of the file (the container is writing it, or its
// monitor was killed) is printed last. Records that do not parse are skipped, as
// kubelet does.
//
// With Tail, only the end of the file is read: the last lines and up to 1 MiB before
// them. A line whose P records lie further back than that (the other stream wrote more
// than 1 MiB between its chunks) is then printed without them, and a line unfinished
// at the end of the file whose records all lie that far back is not printed.
func ReadAll(root, name string, opts ReadOptions, w io.Writer) error {
	if err := opts.validate(); err != nil {
		return err
	}
	path := filepath.Join(root, name)
	dir, f, err := openLog(root, name)
	if err != nil {
		return fmt.Errorf("crilog: read log: %w", err)
	}
	unix.Close(dir)
	defer f.Close()
	lw := newLineWriter(w, opts)
	if _, err := readInitial(f, opts, lw); err != nil {
		return fmt.Errorf("crilog: read log %s: %w", path, err)
	}
	lw.flushPending()
	return lw.flush()
}

// Follow does what ReadAll does (without printing unfinished lines) and then prints
// lines as they are appended, until ctx is done; then it returns nil.
//
// It checks for new records every 100 ms. When the file is rotated (renamed away and
// a new file created under its name in the directory Follow opened), Follow reads the old file to its end, then continues
// with the new file from its start once that has records; a line split across the two
// files is joined. A file truncated in place is read again from its start.
func Follow(ctx context.Context, root, name string, opts ReadOptions, w io.Writer) error {
	if err := opts.validate(); err != nil {
		return err
	}
	path := filepath.Join(root, name)
	dir, f, err := openLog(root, name)
	if err != nil {
		return fmt.Errorf("crilog: follow log: %w", err)
	}
	defer unix.Close(dir)
	defer func() { f.Close() }()
	base := filepath.Base(name)
	lw := newLineWriter(w, opts)
	rr, err := readInitial(f, opts, lw)
	if err != nil {
		return fmt.Errorf("crilog: follow log %s: %w", path, err)
	}
	if err := lw.flush(); err != nil {
		return err
	}
	if followStarted != nil {
		followStarted()
	}
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := replay(rr, -1, lw); err != nil {
			return fmt.Errorf("crilog: follow log %s: %w", path, err)
		}
		var cur unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &cur); err != nil {
			return fmt.Errorf("crilog: follow log %s: %w", path, err)
		}
		switch same, size, err := sameFile(dir, base, &cur); {
		case cur.Size < rr.offset():
			// Truncated in place (copytruncate): start over.
			rr = newRecordReader(f, 0)
			lw.dropPending()
		case err == nil && !same && size > 0:
			// Rotated, and the writer has moved on to the new file: whatever it wrote
			// to the old one is there by now.
			if err := replay(rr, -1, lw); err != nil {
				return fmt.Errorf("crilog: follow log %s: %w", path, err)
			}
			fd, err := openFile(dir, base, unix.O_RDONLY, 0)
			if err != nil {
				// Renamed again already (the next tick sees the newest file), or not a
				// regular file (a pod planted it; it is never read).
				if followRefused != nil {
					followRefused()
				}
				break
			}
			nf := os.NewFile(uintptr(fd), path)
			f.Close()
			f, rr = nf, newRecordReader(nf, 0)
			if err := replay(rr, -1, lw); err != nil {
				return fmt.Errorf("crilog: follow log %s: %w", path, err)
			}
		}
		if err := lw.flush(); err != nil {
			return err
		}
		if followPolled != nil {
			followPolled()
		}
	}
}

// openLog opens the directory of name beneath root and the file in it for reading.
func openLog(root, name string) (dir int, f *os.File, err error) {
	path := filepath.Join(root, name)
	dirName, base, err := splitName(root, name)
	if err != nil {
		return -1, nil, err
	}
	dir, err = openDir(root, dirName, false)
	if err != nil {
		return -1, nil, err
	}
	fd, err := openFile(dir, base, unix.O_RDONLY, 0)
	if err != nil {
		unix.Close(dir)
		return -1, nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return dir, os.NewFile(uintptr(fd), path), nil
}

func (o ReadOptions) validate() error {
	switch o.Streams {
	case "", Stdout, Stderr:
		return nil
	}
	return fmt.Errorf("crilog: read streams %q: %w", o.Streams, ErrBadStream)
}

// readInitial prints what ReadAll prints, except unfinished lines, and returns a
// reader positioned after the last whole record it read.
func readInitial(f *os.File, opts ReadOptions, lw *lineWriter) (*recordReader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if opts.Tail < 0 {
		rr := newRecordReader(f, 0)
		return rr, replay(rr, fi.Size(), lw)
	}
	start, end, err := tailStart(f, fi.Size(), opts)
	if err != nil {
		return nil, err
	}
	// The lines from start to end are whole for the last Tail lines, but may begin
	// with the cut-off end of an earlier line. Count them first, then print all but
	// the first total-Tail of them.
	lw.counting = true
	if err := replay(newRecordReader(f, start), end, lw); err != nil {
		return nil, err
	}
	total := lw.lines + lw.pendingLines()
	lw.reset()
	lw.skip = max(total-opts.Tail, 0)
	rr := newRecordReader(f, start)
	if err := replay(rr, end, lw); err != nil {
		return nil, err
	}
	lw.suppressPending()
	return rr, nil
}

// replay feeds the whole records from rr up to limit (< 0: to the end) to lw.
func replay(rr *recordReader, limit int64, lw *lineWriter) error {
	for {
		rec, ok, err := rr.next(limit)
		if err != nil || !ok {
			return err
		}
		e, err := ParseLine(rec)
		if err != nil {
			continue
		}
		lw.add(e)
		if lw.err != nil {
			return lw.err
		}
	}
}

// tailStart finds where to start reading to print the last opts.Tail lines of the
// file of the given size: the start of the earliest record of those lines and of the
// lines unfinished at the end of the file. end is the end of the last whole record.
//
// It reads backwards. Going backwards, an F record of a stream begins a line and the
// P records of that stream before it (up to its previous F) belong to that line. With
// Since it counts lines by the time of their F record; a counted line that began before
// Since is filtered out when printing, and as it began before every line that is
// printed, those all lie after start too. After
// counting it reads on until the start of every counted line is certain (an earlier F
// of its stream) and it has met both streams, at most lookBehind bytes.
func tailStart(f *os.File, size int64, opts ReadOptions) (start, end int64, err error) {
	bs := backScanner{f: f, buf: make([]byte, 64<<10)}
	end, err = bs.init(size)
	if err != nil {
		return 0, 0, err
	}
	type group struct {
		open  bool  // its start is not found yet
		start int64 // offset of its earliest record found so far
	}
	var (
		groups    [2]group
		seen      [2]bool
		remaining = opts.Tail
		counting  = remaining > 0
		countedAt = int64(-1) // offset where counting ended
	)
	start = end
	closeGroup := func(g *group) {
		if g.open {
			start = min(start, g.start)
			g.open = false
		}
	}
	for {
		rec, off, ok, err := bs.prev()
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			break
		}
		e, err := ParseLine(rec)
		if err != nil {
			continue
		}
		s := streamIndex(e.Stream)
		if !opts.wants(s) {
			continue
		}
		g := &groups[s]
		if !seen[s] {
			seen[s] = true
			if e.Partial {
				// The stream's last line is unfinished; it is always printed.
				*g = group{open: true, start: off}
				continue
			}
		} else if e.Partial {
			if g.open {
				g.start = off
			}
			continue
		}
		// An F record: the line after it in this stream (if any) is complete.
		closeGroup(g)
		if counting && !opts.Since.IsZero() && e.Time.Before(opts.Since) {
			counting = false // every earlier line is older still
		}
		if counting {
			*g = group{open: true, start: off}
			remaining--
			counting = remaining > 0
		}
		if counting {
			continue
		}
		if countedAt < 0 {
			countedAt = off
		}
		settled := !groups[0].open && !groups[1].open &&
			(seen[0] || !opts.wants(0)) && (seen[1] || !opts.wants(1))
		if settled || countedAt-off > lookBehind {
			break
		}
	}
	closeGroup(&groups[0])
	closeGroup(&groups[1])
	return start, end, nil
}

func streamIndex(stream string) int {
	if stream == Stderr {
		return 1
	}
	return 0
}

func (o ReadOptions) wants(stream int) bool {
	switch o.Streams {
	case Stdout:
		return stream == 0
	case Stderr:
		return stream == 1
	}
	return true
}

// lineWriter joins records into lines and prints the ones the options select.
type lineWriter struct {
	out  *bufio.Writer
	opts ReadOptions

	counting bool  // count lines without printing them
	lines    int64 // lines that passed the filters
	skip     int64 // lines still to be skipped (Tail)

	pend [2]pendingLine // per stream: the line whose P records have been read
	ts   [64]byte
	err  error // the first error writing out; bufio.Writer keeps returning it
}

type pendingLine struct {
	active   bool
	suppress bool // skipped for Tail: its first records lay before the lines to print
	time     time.Time
	buf      []byte
}

func newLineWriter(w io.Writer, opts ReadOptions) *lineWriter {
	return &lineWriter{out: bufio.NewWriterSize(w, 32<<10), opts: opts}
}

func (lw *lineWriter) add(e Entry) {
	s := streamIndex(e.Stream)
	if !lw.opts.wants(s) {
		return
	}
	p := &lw.pend[s]
	if e.Partial {
		if !p.active {
			*p = pendingLine{active: true, time: e.Time, buf: p.buf[:0]}
		}
		p.buf = append(p.buf, e.Content...)
		return
	}
	if !p.active {
		lw.line(e.Time, e.Content)
		return
	}
	p.active = false
	p.buf = append(p.buf, e.Content...)
	if !p.suppress {
		lw.line(p.time, p.buf)
	}
}

func (lw *lineWriter) line(t time.Time, content []byte) {
	if !lw.opts.Since.IsZero() && t.Before(lw.opts.Since) {
		return
	}
	lw.lines++
	if lw.counting {
		return
	}
	if lw.skip > 0 {
		lw.skip--
		return
	}
	if lw.opts.Timestamps {
		lw.out.Write(t.AppendFormat(lw.ts[:0], OutputTimeFormat))
		lw.out.WriteByte(' ')
	}
	lw.out.Write(content)
	if err := lw.out.WriteByte('\n'); err != nil && lw.err == nil {
		lw.err = fmt.Errorf("crilog: write log lines: %w", err)
	}
}

// pendingOrder returns the streams with unfinished lines, the earliest-begun first.
func (lw *lineWriter) pendingOrder() []int {
	a, b := lw.pend[0], lw.pend[1]
	switch {
	case a.active && b.active && b.time.Before(a.time):
		return []int{1, 0}
	case a.active && b.active:
		return []int{0, 1}
	case a.active:
		return []int{0}
	case b.active:
		return []int{1}
	}
	return nil
}

// pendingLines counts the unfinished lines that would be printed.
func (lw *lineWriter) pendingLines() int64 {
	var n int64
	for _, s := range lw.pendingOrder() {
		if p := lw.pend[s]; !p.suppress && (lw.opts.Since.IsZero() || !p.time.Before(lw.opts.Since)) {
			n++
		}
	}
	return n
}

// suppressPending uses up what is left of skip on the unfinished lines, which come
// last, so that Follow does not print them when they end.
func (lw *lineWriter) suppressPending() {
	for _, s := range lw.pendingOrder() {
		p := &lw.pend[s]
		if lw.skip > 0 && (lw.opts.Since.IsZero() || !p.time.Before(lw.opts.Since)) {
			p.suppress = true
			lw.skip--
		}
	}
	lw.skip = 0
}

// flushPending prints the unfinished lines.
func (lw *lineWriter) flushPending() {
	for _, s := range lw.pendingOrder() {
		p := &lw.pend[s]
		p.active = false
		if !p.suppress {
			lw.line(p.time, p.buf)
		}
	}
}

func (lw *lineWriter) dropPending() {
	lw.pend[0].active, lw.pend[1].active = false, false
}

func (lw *lineWriter) reset() {
	lw.counting, lw.lines, lw.skip = false, 0, 0
	lw.dropPending()
}

func (lw *lineWriter) flush() error {
	if err := lw.out.Flush(); err != nil {
		return fmt.Errorf("crilog: write log lines: %w", err)
	}
	return nil
}

// recordReader reads whole records forward from a file.
type recordReader struct {
	f    *os.File
	buf  []byte
	base int64 // file offset of buf[0]
	r, w int   // unread bytes are buf[r:w]
}

func newRecordReader(f *os.File, off int64) *recordReader {
	return &recordReader{f: f, buf: make([]byte, 64<<10), base: off}
}

// offset is the file offset of the next record.
func (rr *recordReader) offset() int64 { return rr.base + int64(rr.r) }

// next returns the next record without its "\n". ok is false when no whole record
// ends before limit (< 0: the end of the file); a record still being written is left
// for a later call. rec is valid until the next call.
func (rr *recordReader) next(limit int64) (rec []byte, ok bool, err error) {
	scanned := rr.r
	for {
		if i := bytes.IndexByte(rr.buf[scanned:rr.w], '\n'); i >= 0 {
			rec = rr.buf[rr.r : scanned+i]
			rr.r = scanned + i + 1
			return rec, true, nil
		}
		scanned = rr.w
		if rr.r > 0 {
			n := copy(rr.buf, rr.buf[rr.r:rr.w])
			rr.base += int64(rr.r)
			scanned -= rr.r
			rr.r, rr.w = 0, n
		}
		if rr.w == len(rr.buf) {
			rr.buf = append(rr.buf, make([]byte, len(rr.buf))...)
		}
		want := rr.buf[rr.w:]
		if limit >= 0 {
			left := limit - rr.base - int64(rr.w)
			if left <= 0 {
				return nil, false, nil
			}
			want = want[:min(int64(len(want)), left)]
		}
		n, err := rr.f.ReadAt(want, rr.base+int64(rr.w))
		rr.w += n
		if n == 0 {
			if err == io.EOF {
				err = nil
			}
			return nil, false, err
		}
	}
}

// backScanner reads the records of a file from its end towards its start.
type backScanner struct {
	f    *os.File
	buf  []byte
	s, e int   // unscanned bytes are buf[s:e]; they end just after a "\n"
	pos  int64 // file offset of buf[s]
}

// init positions the scanner at the end of the last whole record before size and
// returns that offset.
func (bs *backScanner) init(size int64) (int64, error) {
	bs.s, bs.e, bs.pos = len(bs.buf), len(bs.buf), size
	for {
		if i := bytes.LastIndexByte(bs.buf[bs.s:bs.e], '\n'); i >= 0 {
			bs.e = bs.s + i + 1
			return bs.pos + int64(i) + 1, nil
		}
		if bs.pos == 0 {
			bs.e = bs.s
			return 0, nil
		}
		if err := bs.fill(); err != nil {
			return 0, err
		}
	}
}

// prev returns the record before the unscanned end and its offset; ok is false at the
// start of the file.
func (bs *backScanner) prev() (rec []byte, off int64, ok bool, err error) {
	for {
		data := bs.buf[bs.s:bs.e]
		if len(data) > 0 {
			i := bytes.LastIndexByte(data[:len(data)-1], '\n')
			if i >= 0 || bs.pos == 0 {
				bs.e = bs.s + i + 1
				return data[i+1 : len(data)-1], bs.pos + int64(i) + 1, true, nil
			}
		} else if bs.pos == 0 {
			return nil, 0, false, nil
		}
		if err := bs.fill(); err != nil {
			return nil, 0, false, err
		}
	}
}

// fill reads the bytes before the unscanned ones, growing the buffer for long records.
func (bs *backScanner) fill() error {
	if bs.s == 0 {
		n := bs.e - bs.s
		buf := bs.buf
		if n > len(buf)/2 {
			buf = make([]byte, 2*len(buf))
		}
		copy(buf[len(buf)-n:], bs.buf[bs.s:bs.e])
		bs.buf, bs.s, bs.e = buf, len(buf)-n, len(buf)
	}
	k := int(min(int64(bs.s), bs.pos))
	if _, err := bs.f.ReadAt(bs.buf[bs.s-k:bs.s], bs.pos-int64(k)); err != nil {
		return err
	}
	bs.s -= k
	bs.pos -= int64(k)
	return nil
}
