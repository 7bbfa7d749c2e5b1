package protocol

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

// TestLockOutlivesItsTaker: the lock is held as long as any process holds the
// locked file (a monitor inherits it from agentd), is seen without being taken,
// and is free again once its last holder is gone.
func TestLockOutlivesItsTaker(t *testing.T) {
	dir := t.TempDir()
	if Locked(dir) {
		t.Fatal("locked before anyone took the lock")
	}
	f, err := Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !Locked(dir) || !Locked(dir) {
		t.Fatal("Locked does not see the lock (or a look took it)")
	}
	if _, err := Lock(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Lock: %v, want ErrLocked", err)
	}
	// A child that inherits the locked file keeps the lock after we close ours.
	child := exec.Command("sleep", "3600")
	child.ExtraFiles = []*os.File{f}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !Locked(dir) {
		t.Error("the lock went with our descriptor although a child holds the file")
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	if Locked(dir) {
		t.Error("still locked after its last holder exited")
	}
	g, err := Lock(dir)
	if err != nil {
		t.Fatalf("Lock after the holder exited: %v", err)
	}
	g.Close()
}
