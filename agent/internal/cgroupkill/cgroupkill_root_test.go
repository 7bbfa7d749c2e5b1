package cgroupkill

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// testCgroup makes the cgroup path in every hierarchy that lets a process join it
// (not v1's cpuset, which needs cpus and mems first) and removes it at the end.
type testCgroup struct {
	t    *testing.T
	path string
	dirs []string // in every hierarchy where a process can join
}

func newTestCgroup(t *testing.T, path string) *testCgroup {
	t.Helper()
	cg := &testCgroup{t: t, path: path}
	for _, root := range Hierarchies() {
		if filepath.Base(root) == "cpuset" {
			continue
		}
		dir := filepath.Join(root, path)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			continue
		}
		cg.dirs = append(cg.dirs, dir)
	}
	if len(cg.dirs) == 0 {
		t.Skip("no cgroup hierarchy to make a test cgroup in")
	}
	t.Cleanup(func() {
		for _, d := range cg.dirs {
			removeTree(d)
		}
	})
	return cg
}

// removeTree removes an empty cgroup and its empty children.
func removeTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = syscall.Rmdir(dir)
}

// join moves pid into sub (a cgroup below the test's, "" for the test's own) in
// every hierarchy.
func (cg *testCgroup) join(pid int, sub string) {
	cg.t.Helper()
	for _, d := range cg.dirs {
		dir := filepath.Join(d, sub)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			cg.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			cg.t.Fatalf("move %d into %s: %v", pid, dir, err)
		}
	}
}

// leave moves pid back to the root of every hierarchy.
func (cg *testCgroup) leave(pid int) {
	cg.t.Helper()
	for _, d := range cg.dirs {
		root := d[:len(d)-len(cg.path)]
		if err := os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			cg.t.Fatalf("move %d out of %s: %v", pid, d, err)
		}
	}
}

// sleeper is a process the test starts, reaped by the test.
type sleeper struct {
	cmd    *exec.Cmd
	exited chan error
}

func startSleeper(t *testing.T) *sleeper {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &sleeper{cmd: cmd, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // by the pid this test started
		<-s.exited
		s.exited <- nil
	})
	return s
}

func (s *sleeper) pid() int { return s.cmd.Process.Pid }

// killed waits for the process to be killed by SIGKILL.
func (s *sleeper) killed(t *testing.T, what string) {
	t.Helper()
	select {
	case err := <-s.exited:
		s.exited <- err
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("%s: ended with %v, want SIGKILL", what, err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s (pid %d) still runs", what, s.pid())
	}
}

// running reports whether the process has not exited (it is our child: until we
// reap it, its pid is its own).
func (s *sleeper) running() bool {
	select {
	case err := <-s.exited:
		s.exited <- err
		return false
	default:
		return true
	}
}

// TestRootKillInCgroup: Cgroup kills every process in a real cgroup and below
// it, and nothing outside; Pid leaves alone a process that has left the
// cgroup since its pid was read, as a reused pid would have.
func TestRootKillInCgroup(t *testing.T) {
	testutil.RequiresRoot(t)
	path := fmt.Sprintf("/agentd-killtest-%d", os.Getpid())
	cg := newTestCgroup(t, path)

	inside, below, outside, moved := startSleeper(t), startSleeper(t), startSleeper(t), startSleeper(t)
	cg.join(inside.pid(), "")
	cg.join(below.pid(), "sub")
	cg.join(moved.pid(), "")

	// moved's pid is read from cgroup.procs, then it leaves the cgroup: signalling
	// it now would hit a process that is none of the cgroup's.
	listed := Procs(path)
	if !contains(listed, moved.pid()) || !contains(listed, inside.pid()) || !contains(listed, below.pid()) || contains(listed, outside.pid()) {
		t.Fatalf("Procs(%s) = %v; inside %d below %d moved %d outside %d", path, listed, inside.pid(), below.pid(), moved.pid(), outside.pid())
	}
	cg.leave(moved.pid())
	if err := Pid(moved.pid(), path, syscall.SIGKILL); !errors.Is(err, ErrNotMember) {
		t.Errorf("Pid of a process that left: %v, want ErrNotMember", err)
	}
	if err := Pid(outside.pid(), path, syscall.SIGKILL); !errors.Is(err, ErrNotMember) {
		t.Errorf("Pid of a process never in it: %v, want ErrNotMember", err)
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		pids, err := Cgroup(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cgroup %s still holds %v", path, pids)
		}
		time.Sleep(5 * time.Millisecond)
	}
	inside.killed(t, "the process in the cgroup")
	below.killed(t, "the process in a cgroup below it")
	if !outside.running() {
		t.Errorf("the process outside the cgroup was killed")
	}
	if !moved.running() {
		t.Errorf("the process that left the cgroup after its pid was read was killed")
	}
	if err := Pid(outside.pid(), "/", syscall.SIGKILL); err == nil {
		t.Errorf("Pid accepted the root cgroup")
	}
}

func contains(pids []int, pid int) bool {
	for _, p := range pids {
		if p == pid {
			return true
		}
	}
	return false
}
