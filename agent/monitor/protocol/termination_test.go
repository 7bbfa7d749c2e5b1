package protocol

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ReadTerminationLog reads only a regular file, capped, and never blocks or follows
// a symlink: a FIFO, a device or a link to a host file yield nothing.
func TestReadTerminationLog(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	if err := os.WriteFile(regular, []byte(strings.Repeat("x", 2*MaxTerminationMessage)), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(secret, link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := ReadTerminationLog(regular); len(got) != MaxTerminationMessage {
		t.Errorf("regular file: read %d bytes, want the cap %d", len(got), MaxTerminationMessage)
	}
	for name, path := range map[string]string{"symlink": link, "fifo": fifo, "device": "/dev/zero", "missing": filepath.Join(dir, "nope"), "none": "", "directory": dir} {
		done := make(chan string, 1)
		go func() { done <- ReadTerminationLog(path) }()
		select {
		case got := <-done:
			if got != "" {
				t.Errorf("%s: read %q", name, got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: ReadTerminationLog blocked", name)
		}
	}
}
