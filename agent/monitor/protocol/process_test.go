package protocol

import (
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func TestProcessAlive(t *testing.T) {
	st, err := ProcessStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !ProcessAlive(os.Getpid(), st) {
		t.Error("ProcessAlive(self) = false")
	}
	if ProcessAlive(os.Getpid(), st+1) {
		t.Error("ProcessAlive with another start time = true: a reused pid would pass")
	}

	cmd := exec.Command("true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	cst, err := ProcessStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Exited, not reaped yet: a zombie is gone.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); err != nil {
		t.Fatal(err)
	}
	if ProcessAlive(pid, cst) {
		t.Error("ProcessAlive of a zombie = true")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if ProcessAlive(pid, cst) {
		t.Error("ProcessAlive of a reaped child = true")
	}
}
