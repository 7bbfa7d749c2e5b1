package protocol

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadStateFile(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("x", 20<<10) // more than the first buffer
	for name, want := range map[string]string{"empty": "", "small": `{"a":1}`, "big": big} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readStateFile(p)
		if err != nil || string(got) != want {
			t.Errorf("%s: got %d bytes, %v; want %d bytes", name, len(got), err, len(want))
		}
	}
	if _, err := readStateFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	// A FIFO planted in a state directory does not block the reader.
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readStateFile(fifo); err != nil || len(got) != 0 {
		t.Errorf("FIFO: %q, %v; want nothing", got, err)
	}
	// A symlink planted in place of a state file is not followed, and a file too
	// large for one (/dev/zero behind a bind mount, say) is not read to its end.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "small"), link); err != nil {
		t.Fatal(err)
	}
	if got, err := readStateFile(link); !errors.Is(err, unix.ELOOP) {
		t.Errorf("symlink: %q, %v; want ELOOP", got, err)
	}
	if got, err := readStateFile("/dev/zero"); err == nil {
		t.Errorf("/dev/zero: read %d bytes without an error", len(got))
	}
	var j Journal
	if err := readJSON(filepath.Join(dir, "small"), &j); err != nil {
		t.Errorf("small: %v", err)
	}
	if err := readJSON(filepath.Join(dir, "big"), &j); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "big")) {
		t.Errorf("big: %v, want a JSON error naming the file", err)
	}
}
