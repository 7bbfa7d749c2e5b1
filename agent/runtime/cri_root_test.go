package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/testutil"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// What the CRI server needs of the monitor: an exec's process dies with its
// client (ExecSync's timeout), and a container logs to the file a CRI client names.

// sleeps lists the processes in cfg's container cgroup that run `sleep <arg>`.
func sleeps(cfg *protocol.ContainerConfig, arg string) []int {
	var out []int
	for _, pid := range cgroupProcs(cfg.Cgroup.Path) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err == nil && string(b) == "sleep\x00"+arg+"\x00" {
			out = append(out, pid)
		}
	}
	return out
}

func TestRootExecDiesWithItsClient(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("execkill", "Always", "echo up; sleep 3600"))
	cfg, _ := h.mustStart(pod, 0)
	h.waitLog(cfg, "up")

	t.Run("ExecSync timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		var seen bool // the test saw the process run
		stopLooking := make(chan struct{})
		looked := make(chan struct{})
		go func() {
			defer close(looked)
			for {
				if len(sleeps(cfg, "4321")) > 0 {
					seen = true
					return
				}
				select {
				case <-stopLooking:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
		start := time.Now()
		code, err := h.rt.Exec(ctx, cfg.ID, &protocol.ExecRequest{Args: []string{"sleep", "4321"}}, ExecIO{})
		took := time.Since(start)
		close(stopLooking)
		<-looked
		if err == nil {
			t.Fatalf("Exec of sleep 4321 with a 1s timeout returned code %d and no error", code)
		}
		if took > 30*time.Second {
			t.Errorf("Exec returned %s after its context ended", took)
		}
		t.Logf("Exec returned after %s: %v (process seen running: %v)", took.Round(time.Millisecond), err, seen)
		waitFor(t, 20*time.Second, "sleep 4321 to be gone from the container's cgroup", func() bool {
			return len(sleeps(cfg, "4321")) == 0
		})
	})

	// Without a race against a fixed timeout: the client goes once the process
	// and its children run, and every one of them dies.
	t.Run("client gone takes the process group", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() {
			_, err := h.rt.Exec(ctx, cfg.ID, &protocol.ExecRequest{Args: []string{"sh", "-c", "sleep 4322 & sleep 4323; echo never"}}, ExecIO{Stdout: &testutil.SyncBuffer{}})
			done <- err
		}()
		waitFor(t, 20*time.Second, "the exec's sleeps to run", func() bool {
			return len(sleeps(cfg, "4322")) == 1 && len(sleeps(cfg, "4323")) == 1
		})
		cancel()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("Exec whose context was cancelled returned no error")
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Exec did not return after its context was cancelled")
		}
		waitFor(t, 20*time.Second, "the exec's process group to be gone from the container's cgroup", func() bool {
			return len(sleeps(cfg, "4322")) == 0 && len(sleeps(cfg, "4323")) == 0
		})
	})

	// agentctl exec's stdin reaching EOF is not its client going away: the
	// process reads to the end and goes on, and its output still arrives.
	t.Run("stdin closed, client still reading", func(t *testing.T) {
		var out testutil.SyncBuffer
		code, err := h.rt.Exec(context.Background(), cfg.ID, &protocol.ExecRequest{Args: []string{"sh", "-c", "cat; echo after-eof; exit 3"}},
			ExecIO{Stdin: strings.NewReader("piped\n"), Stdout: &out})
		if err != nil || code != 3 || out.String() != "piped\nafter-eof\n" {
			t.Errorf("exec with stdin closed: code %d err %v stdout %q", code, err, out.String())
		}
	})

	// The container itself is untouched by its execs' deaths.
	if j, err := h.rt.Status(context.Background(), cfg.ID); err != nil || j.State != protocol.StateRunning || j.RestartCount != 0 {
		t.Errorf("container after its execs were killed: %+v %v", j, err)
	}
}

func TestRootCRILogFile(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("crilog", "Never", "i=0; while :; do echo line $i; i=$((i+1)); sleep 0.05; done"))
	sb, err := h.rt.EnsureSandbox(pod)
	if err != nil {
		t.Fatal(err)
	}
	h.uids = append(h.uids, string(pod.UID))
	cfg, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, h.img, sb, h.rt.Settings())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Log.File = "cri/sandbox-1/main_0.log" // LogDirectory "<log-dir>/cri/sandbox-1", LogPath "main_0.log"
	if _, err := h.rt.Start(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(h.rt.cfg.LogDir, "cri", "sandbox-1", "main_0.log")
	j, err := h.rt.Status(context.Background(), cfg.ID)
	if err != nil || j.Current() == nil || j.Current().LogPath != want {
		t.Fatalf("journal %+v (%v): want its run's log path %s", j, err, want)
	}
	logged := func(path string) func() bool {
		return func() bool {
			b, err := os.ReadFile(path)
			return err == nil && bytes.Contains(b, []byte(" stdout F line "))
		}
	}
	waitFor(t, 20*time.Second, "lines in "+want, logged(want))
	if _, err := os.Stat(protocol.LogPath(&protocol.ContainerConfig{Log: protocol.LogConfig{Dir: cfg.Log.Dir}}, 0)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the kubelet-layout log file exists as well: %v", err)
	}

	// ReopenContainerLog: the client renamed the file away; new lines go to a new one.
	if err := os.Rename(want, want+".20260101-000000"); err != nil {
		t.Fatal(err)
	}
	if err := h.rt.ReopenLog(context.Background(), cfg.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "lines in the reopened "+want, logged(want))
}
