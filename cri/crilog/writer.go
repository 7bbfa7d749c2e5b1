package crilog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Stream names, as they appear in records.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

const (
	// DefaultMaxLineSize is containerd's default max_container_log_line_size.
	DefaultMaxLineSize = 16 << 10

	// minReadBuffer is the smallest read buffer of a Copy.
	minReadBuffer = 64 << 10

	// headerCap holds "<timestamp> stderr P ". RFC3339Nano is at most 35 bytes for
	// the years 0–9999 and 44 for any year a time.Time can hold.
	headerCap = 64

	// maxIovecs bounds one writev: a record takes two (header, content+"\n") or
	// three (header, content, "\n") iovecs.
	maxIovecs = 192
	maxBatch  = maxIovecs / 2

	// linkCheckInterval is how often the open file is checked for having been deleted.
	linkCheckInterval = time.Second
)

// ErrBadStream is returned for a stream name other than "stdout" or "stderr".
var ErrBadStream = errors.New(`stream must be "stdout" or "stderr"`)

// newline is the record terminator written after content that lacks one.
var newline = [1]byte{'\n'}

// Options configure a Writer. The zero value means kubelet-like defaults and no rotation.
type Options struct {
	// MaxLineSize is the most content bytes in one record; a longer line is split into
	// P records of MaxLineSize bytes and a final F record. Default DefaultMaxLineSize.
	MaxLineSize int64
	// MaxSize rotates the file before a record would make it grow beyond MaxSize
	// bytes. A record is never split across files, so a file holding one record larger
	// than MaxSize exceeds it. 0 never rotates.
	MaxSize int64
	// MaxFiles is how many rotated files are kept besides the live one: path.1 is the
	// newest, path.MaxFiles the oldest; rotation overwrites the oldest. Default 1.
	MaxFiles int
	// Now stamps records; default time.Now (local zone, as kubelet's runtimes write).
	Now func() time.Time
}

// Writer writes a container's stdout and stderr into one CRI log file.
//
// Lifecycle: Open, then one Copy per stream (they may run concurrently), Reopen at any
// time (for example when asked to after an external rotation), Close after the Copy
// calls have returned. A Copy still running after Close keeps reading its pipe and
// counts what it reads as dropped. All methods are safe for concurrent use.
type Writer struct {
	path     string   // for messages: root/name
	dir      int      // the file's directory, opened beneath root when the Writer was opened
	base     string   // the file's name in dir
	names    []string // names[i] is "base.i" for 1 ≤ i ≤ maxFiles
	maxLine  int
	maxSize  int64
	maxFiles int
	now      func() time.Time

	dropped atomic.Int64 // content bytes of records that could not be written

	// Hooks for tests; set before the first Copy and never changed afterwards.
	writev         func(fd int, iov []unix.Iovec) (int, error)
	linkCheckEvery time.Duration

	mu        sync.Mutex
	fd        int       // guarded by mu; -1 while no file is open
	size      int64     // guarded by mu; bytes in the open file
	closed    bool      // guarded by mu
	torn      bool      // guarded by mu; the file ends in a record fragment without "\n"
	lastCheck time.Time // guarded by mu; when the open file's link count was last checked

	// The batch of records being written, guarded by mu. Iovecs point into hdr and
	// into the buffer of the Copy that holds mu; they are cleared after each write.
	hdr     [2][headerCap]byte // "<time> <stream> F " and the same with P
	hdrLen  int
	iov     [maxIovecs]unix.Iovec
	niov    int
	recs    [maxBatch]batchRecord
	nrec    int
	pending int64 // bytes in the batch
}

// batchRecord remembers where a record ends in the batch, so that a write that fails
// halfway can be cut back to whole records and the rest counted as dropped.
type batchRecord struct {
	end     int64 // bytes of the batch up to and including this record
	content int   // content bytes of this record
}

// Open opens the log file name (a path relative to root, such as
// "<pod dir>/<container>/0.log") for appending, creating it and its parent
// directories as needed. root is trusted and opened by path; every component beneath
// it is opened without following symlinks, and the file only if it is a regular
// file (see ErrUnsafeFile). The Writer keeps the directory's fd: rotation and Reopen
// work in that directory, whatever is renamed or planted on the path later.
func Open(root, name string, opts Options) (*Writer, error) {
	path := filepath.Join(root, name)
	dirName, base, err := splitName(root, name)
	if err != nil {
		return nil, err
	}
	w := &Writer{
		path:           path,
		base:           base,
		maxLine:        DefaultMaxLineSize,
		maxSize:        max(opts.MaxSize, 0),
		maxFiles:       max(opts.MaxFiles, 1),
		now:            opts.Now,
		writev:         writev,
		linkCheckEvery: linkCheckInterval,
		fd:             -1,
	}
	if opts.MaxLineSize > 0 {
		w.maxLine = int(min(opts.MaxLineSize, 1<<30))
	}
	if w.now == nil {
		w.now = time.Now
	}
	w.names = make([]string, w.maxFiles+1)
	for i := 1; i <= w.maxFiles; i++ {
		w.names[i] = base + "." + strconv.Itoa(i)
	}
	dir, err := openDir(root, dirName, true)
	if err != nil {
		return nil, fmt.Errorf("crilog: open the directory of log file %s: %w", path, err)
	}
	w.dir = dir
	if err := w.openLocked(); err != nil {
		unix.Close(dir)
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return w, nil
}

// Copy reads r until EOF and writes a record for every line of it, tagged with stream
// ("stdout" or "stderr"). It returns nil at EOF and the read error otherwise.
//
// Lines longer than MaxLineSize become P records of MaxLineSize content bytes and a
// final F record; a last line without "\n" at EOF is written as an F record. A line
// is written once its "\n" has been read (or its first MaxLineSize+1 bytes), so a
// prompt without "\n" shows up only when the line ends, as with containerd.
//
// Copy never stops reading r because of the log file: records that cannot be written
// are counted in Dropped.
func (w *Writer) Copy(stream string, r io.Reader) error {
	if stream != Stdout && stream != Stderr {
		return fmt.Errorf("crilog: copy stream %q into %s: %w", stream, w.path, ErrBadStream)
	}
	// The unwritten rest of a line is at most maxLine bytes (writeRecords splits off
	// chunks of longer ones), so a read always has room.
	buf := make([]byte, max(minReadBuffer, w.maxLine+1))
	start, end := 0, 0
	for {
		n, err := r.Read(buf[end:])
		end += n
		if n > 0 || err != nil {
			start = w.writeRecords(stream, buf, start, end, err != nil)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("crilog: read container %s for %s: %w", stream, w.path, err)
		}
		if start > 0 {
			end = copy(buf, buf[start:end])
			start = 0
		}
	}
}

// writeRecords writes the records found in buf[start:end]: each line ended by "\n",
// chunks of lines longer than maxLine, and at eof the unterminated rest. It returns
// the offset of the first byte not written: the start of a line still being read.
func (w *Writer) writeRecords(stream string, buf []byte, start, end int, eof bool) int {
	p := start
	if bytes.IndexByte(buf[p:end], '\n') < 0 && end-p <= w.maxLine && !(eof && end > p) {
		return p
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// One timestamp per read, as conmon does: the lines of one read arrived together.
	w.setHeaderLocked(stream)
	for {
		i := bytes.IndexByte(buf[p:end], '\n')
		if i < 0 {
			break
		}
		eol := p + i
		for eol-p > w.maxLine {
			w.addLocked(true, buf[p:p+w.maxLine], false)
			p += w.maxLine
		}
		w.addLocked(false, buf[p:eol+1], true)
		p = eol + 1
	}
	for end-p > w.maxLine {
		w.addLocked(true, buf[p:p+w.maxLine], false)
		p += w.maxLine
	}
	if eof && end > p {
		w.addLocked(false, buf[p:end], false)
		p = end
	}
	w.flushLocked()
	return p
}

// setHeaderLocked formats the F and P headers for stream at the current time.
func (w *Writer) setHeaderLocked(stream string) {
	h := w.now().AppendFormat(w.hdr[0][:0], time.RFC3339Nano)
	h = append(h, ' ')
	h = append(h, stream...)
	h = append(h, ' ', 'F', ' ')
	w.hdrLen = len(h)
	copy(w.hdr[1][:], h)
	w.hdr[1][w.hdrLen-2] = 'P'
}

// addLocked appends one record to the batch: the header, data, and a "\n" unless data
// already ends with it (hasNL). It first writes the batch and rotates the file when the
// record would make the file grow beyond maxSize.
func (w *Writer) addLocked(partial bool, data []byte, hasNL bool) {
	tag := 0
	if partial {
		tag = 1
	}
	hdr := w.hdr[tag][:w.hdrLen]
	content := len(data)
	n := int64(len(hdr) + len(data))
	if hasNL {
		content--
	} else {
		n++
	}
	if w.maxSize > 0 {
		if used := w.size + w.pending; used > 0 && used+n > w.maxSize {
			w.flushLocked()
			w.rotateLocked()
		}
	}
	if w.niov+3 > len(w.iov) || w.nrec == len(w.recs) {
		w.flushLocked()
	}
	w.pushLocked(hdr)
	w.pushLocked(data)
	if !hasNL {
		w.pushLocked(newline[:])
	}
	w.pending += n
	w.recs[w.nrec] = batchRecord{end: w.pending, content: content}
	w.nrec++
}

func (w *Writer) pushLocked(b []byte) {
	iov := &w.iov[w.niov]
	iov.Base = &b[0]
	iov.SetLen(len(b))
	w.niov++
}

// flushLocked writes the batch. Records that cannot be written are dropped and
// counted; a record cut by a failing write is removed from the file again, so the
// file only ever holds whole records.
func (w *Writer) flushLocked() {
	if w.nrec == 0 {
		return
	}
	defer w.resetBatchLocked()
	if !w.readyLocked() {
		w.dropLocked(0)
		return
	}
	written, err := w.writeAllLocked(w.iov[:w.niov])
	if err == nil {
		w.size += written
		return
	}
	var kept int64
	k := 0
	for k < w.nrec && w.recs[k].end <= written {
		kept = w.recs[k].end
		k++
	}
	w.size += kept
	if written > kept {
		if unix.Ftruncate(w.fd, w.size) != nil {
			w.size += written - kept
			w.torn = true
		}
	}
	w.dropLocked(k)
	if !errors.Is(err, unix.ENOSPC) && !errors.Is(err, unix.EDQUOT) {
		// EIO, ESTALE, EBADF and the like: try a fresh open for the next batch.
		unix.Close(w.fd)
		w.fd = -1
	}
}

// readyLocked makes sure a file is open for the next write: it opens the path after a
// failure, replaces a file that was deleted under us, and ends a torn record.
func (w *Writer) readyLocked() bool {
	if w.closed {
		return false
	}
	if w.fd >= 0 {
		if now := time.Now(); now.Sub(w.lastCheck) >= w.linkCheckEvery {
			w.lastCheck = now
			var st unix.Stat_t
			if unix.Fstat(w.fd, &st) == nil && st.Nlink == 0 {
				unix.Close(w.fd)
				w.fd = -1
			}
		}
	}
	if w.fd < 0 && w.openLocked() != nil {
		return false
	}
	if w.torn {
		// Terminate the fragment so it is one malformed line, not part of the next record.
		if n, err := unix.Write(w.fd, newline[:]); err != nil || n != 1 {
			return false
		}
		w.size++
		w.torn = false
	}
	return true
}

// writeAllLocked writes iov to the file, resuming after short writes and EINTR. It
// returns the bytes written and the error that stopped it.
func (w *Writer) writeAllLocked(iov []unix.Iovec) (int64, error) {
	var total int64
	for len(iov) > 0 {
		m, err := w.writev(w.fd, iov)
		if n := m; n > 0 {
			total += int64(n)
			for n > 0 {
				if l := int(iov[0].Len); n >= l {
					n -= l
					iov = iov[1:]
				} else {
					iov[0].Base = (*byte)(unsafe.Add(unsafe.Pointer(iov[0].Base), n))
					iov[0].SetLen(l - n)
					n = 0
				}
			}
		}
		switch {
		case errors.Is(err, unix.EINTR):
		case err != nil:
			return total, err
		case m == 0 && len(iov) > 0:
			return total, io.ErrShortWrite
		}
	}
	return total, nil
}

// dropLocked counts the content of records k and later of the batch as dropped.
func (w *Writer) dropLocked(k int) {
	var n int64
	for _, r := range w.recs[k:w.nrec] {
		n += int64(r.content)
	}
	w.dropped.Add(n)
}

func (w *Writer) resetBatchLocked() {
	clear(w.iov[:w.niov]) // do not keep a finished Copy's buffer alive
	w.niov, w.nrec, w.pending = 0, 0, 0
}

// rotateLocked renames path.(N-1) → path.N … path → path.1 and opens a new, empty
// path. When path cannot be renamed it keeps writing to it and tries again after
// another MaxSize bytes, rather than shifting the older files on every record.
func (w *Writer) rotateLocked() {
	if w.closed {
		return
	}
	// renameat moves whatever is at a name, a symlink included, without following it.
	for i := w.maxFiles - 1; i >= 1; i-- {
		_ = unix.Renameat(w.dir, w.names[i], w.dir, w.names[i+1]) // a missing base.i is fine
	}
	err := unix.Renameat(w.dir, w.base, w.dir, w.names[1])
	if err != nil && err != unix.ENOENT {
		w.size = 0
		return
	}
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
	_ = w.openLocked() // on failure the next batch tries again
}

// openLocked opens the file in its directory for appending and learns its size. It
// returns a bare error so that retrying on every batch while the file cannot be opened
// allocates little.
func (w *Writer) openLocked() error {
	fd, err := openFile(w.dir, w.base, unix.O_WRONLY|unix.O_CREAT|unix.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return err
	}
	w.fd, w.size, w.torn = fd, st.Size, false
	w.lastCheck = time.Now()
	if st.Size > 0 {
		// A previous writer may have left a record without its "\n" (a full disk
		// whose cut could not be undone); start on a fresh line.
		var last [1]byte
		if n, _ := unix.Pread(fd, last[:], st.Size-1); n == 1 && last[0] != '\n' {
			w.torn = true
		}
	}
	return nil
}

// Reopen closes the file and opens it again by name in its directory: after an
// external rotation renamed it away, new records go to a new file.
func (w *Writer) Reopen() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("crilog: reopen %s: %w", w.path, os.ErrClosed)
	}
	if w.fd >= 0 {
		unix.Close(w.fd)
		w.fd = -1
	}
	if err := w.openLocked(); err != nil {
		return &os.PathError{Op: "reopen", Path: w.path, Err: err}
	}
	return nil
}

// Dropped returns how many content bytes were dropped because they could not be written.
func (w *Writer) Dropped() int64 {
	return w.dropped.Load()
}

// Close closes the file. Closing twice is not an error.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	unix.Close(w.dir)
	if w.fd < 0 {
		return nil
	}
	err := unix.Close(w.fd)
	w.fd = -1
	if err != nil {
		return &os.PathError{Op: "close", Path: w.path, Err: err}
	}
	return nil
}

// writev is writev(2) without the [][]byte → []Iovec allocation of unix.Writev.
func writev(fd int, iov []unix.Iovec) (int, error) {
	n, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
