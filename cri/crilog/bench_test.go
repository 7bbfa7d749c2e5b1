package crilog

import (
	"io"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// lineSource plays a container writing the same line n times through a pipe: each
// Read returns at most 64 KiB, the size of a Linux pipe buffer.
type lineSource struct {
	line []byte // with its "\n"
	left int    // lines still to return
	off  int    // bytes of the current line already returned
}

func (s *lineSource) Read(p []byte) (int, error) {
	p = p[:min(len(p), 64<<10)]
	n := 0
	for n < len(p) && s.left > 0 {
		c := copy(p[n:], s.line[s.off:])
		n += c
		s.off += c
		if s.off == len(s.line) {
			s.off = 0
			s.left--
		}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// BenchmarkCopy measures the writer's cost per line, one Copy of b.N lines. MB/s
// counts content bytes. The devnull cases show the CPU cost alone; the file cases
// include the page cache (and rotation every 64 MiB for the long lines).
func BenchmarkCopy(b *testing.B) {
	short := strings.Repeat("s", 99) + "\n"
	long := strings.Repeat("l", 1<<20) + "\n"
	for _, bc := range []struct {
		name string
		line string
		file bool
	}{
		{"short=100B/devnull", short, false},
		{"short=100B/file", short, true},
		{"long=1MiB/devnull", long, false},
		{"long=1MiB/file", long, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			opts := Options{}
			if bc.file {
				opts = Options{MaxSize: 64 << 20, MaxFiles: 1}
			}
			w, err := Open(b.TempDir(), "0.log", opts)
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			if !bc.file {
				// Open refuses a device; write where it would have written.
				devnull, err := unix.Open(os.DevNull, unix.O_WRONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				defer unix.Close(devnull)
				w.writev = func(_ int, iov []unix.Iovec) (int, error) { return writev(devnull, iov) }
			}
			src := &lineSource{line: []byte(bc.line), left: b.N}
			b.SetBytes(int64(len(bc.line) - 1))
			b.ReportAllocs()
			b.ResetTimer()
			// One Copy for all b.N lines: its one buffer is the only allocation.
			if err := w.Copy(Stdout, src); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if d := w.Dropped(); d != 0 {
				b.Fatalf("dropped %d bytes", d)
			}
		})
	}
}
