package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// holdLock starts a process that inherits dir's lock file, locked, and keeps it until its stdin closes; pid is
// written into the file as the agentd that took it.
func holdLock(t *testing.T, dir string, pid func(child int) int) (child *exec.Cmd, stdin *os.File) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	child = exec.Command("cat")
	child.Stdin, child.ExtraFiles = r, []*os.File{f}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); _ = child.Process.Kill(); _ = child.Wait() })
	if err := os.WriteFile(f.Name(), fmt.Appendf(nil, "%d\n", pid(child.Process.Pid)), 0o600); err != nil {
		t.Fatal(err)
	}
	return child, w
}

// deadPid is the pid of a process that has exited and been reaped.
func deadPid(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// TestLockStateLiveHolder: a lock whose agentd runs fails at once, naming it.
func TestLockStateLiveHolder(t *testing.T) {
	dir := t.TempDir()
	child, _ := holdLock(t, dir, func(child int) int { return child })
	_, err := lockState(dir)
	if want := fmt.Sprintf("another agentd (pid %d) is running", child.Process.Pid); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("lockState: %v, want %q", err, want)
	}
}

// TestLockStateOrphanedLock: a lock whose agentd is dead but that a process it forked still holds (the moment between
// fork and exec, or the child's exit) is waited for, and taken once the descriptor goes.
func TestLockStateOrphanedLock(t *testing.T) {
	dir := t.TempDir()
	dead := deadPid(t)
	_, stdin := holdLock(t, dir, func(int) int { return dead })
	waiting := make(chan struct{})
	var once bool
	lockWaiting = func(string) {
		if !once {
			once = true
			close(waiting)
		}
	}
	t.Cleanup(func() { lockWaiting = nil })
	done := make(chan error, 1)
	go func() {
		release, err := lockState(dir)
		if err == nil {
			release()
		}
		done <- err
	}()
	<-waiting
	stdin.Close() // the holder exits
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("lockState after the holder exited: %v", err)
		}
	case <-time.After(lockOrphanWait):
		t.Fatal("lockState did not take the lock once it was free")
	}
	b, _ := os.ReadFile(filepath.Join(dir, lockFile))
	if strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Fatalf("lock file holds %q, want our pid", b)
	}
}

// TestLockStateOrphanedLockKept: an orphaned lock that stays held fails after lockOrphanWait, naming the process that
// keeps it.
func TestLockStateOrphanedLockKept(t *testing.T) {
	dir := t.TempDir()
	old := lockOrphanWait
	lockOrphanWait = 200 * time.Millisecond
	t.Cleanup(func() { lockOrphanWait = old })
	dead := deadPid(t)
	child, _ := holdLock(t, dir, func(int) int { return dead })
	_, err := lockState(dir)
	if want := fmt.Sprintf("another agentd (pid %d), its lock held by pid %d (cat), is running", dead, child.Process.Pid); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("lockState: %v, want %q", err, want)
	}
}
