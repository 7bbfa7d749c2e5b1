package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/internal/testutil"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// startWith starts container 0 of pod with its config changed by edit (the
// process's stdin and terminal, which a manifest's validation would refuse here).
func (h *harness) startWith(pod *corev1.Pod, edit func(*protocol.ContainerConfig)) *protocol.ContainerConfig {
	h.t.Helper()
	sb, err := h.rt.EnsureSandbox(pod)
	if err != nil {
		h.t.Fatal(err)
	}
	h.uids = append(h.uids, string(pod.UID))
	cfg, err := ContainerConfig(pod, &pod.Spec.Containers[0], false, h.img, sb, h.rt.Settings())
	if err != nil {
		h.t.Fatal(err)
	}
	edit(cfg)
	if _, err := h.rt.Start(context.Background(), cfg); err != nil {
		h.t.Fatal(err)
	}
	return cfg
}

// attached is an Attach running in the background.
type attached struct {
	cancel context.CancelFunc
	done   chan error
}

func (h *harness) attach(id string, aio AttachIO) *attached {
	ctx, cancel := context.WithCancel(context.Background())
	a := &attached{cancel: cancel, done: make(chan error, 1)}
	go func() { a.done <- h.rt.Attach(ctx, id, aio) }()
	h.t.Cleanup(cancel)
	return a
}

// wait waits for the Attach to return and returns its error.
func (a *attached) wait(t *testing.T, what string) error {
	t.Helper()
	select {
	case err := <-a.done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("attach did not return after %s", what)
		return nil
	}
}

func waitOutput(t *testing.T, b *testutil.SyncBuffer, text string) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("attached output %q", text), func() bool { return strings.Contains(b.String(), text) })
}

func TestRootAttach(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("attach", "Always", "exec cat"))
	cfg := h.startWith(pod, func(c *protocol.ContainerConfig) { c.Process.Stdin = true })
	h.wait(cfg.ID, 20*time.Second, "running", func(j *protocol.Journal) bool { return j.State == protocol.StateRunning })

	// Two clients: one writes, both see what cat echoes; the log has it too.
	inR, inW := io.Pipe()
	var out1, out2 testutil.SyncBuffer
	a1 := h.attach(cfg.ID, AttachIO{Stdin: inR, Stdout: &out1, Stderr: &out1})
	a2 := h.attach(cfg.ID, AttachIO{Stdout: &out2})
	// Attached once the monitor counts both: the second's output is what the
	// first writes after that.
	waitFor(t, 20*time.Second, "both clients attached", func() bool {
		_, _ = inW.Write([]byte("ping\n"))
		return strings.Contains(out1.String(), "ping") && strings.Contains(out2.String(), "ping")
	})
	if _, err := inW.Write([]byte("hello from stdin\n")); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &out1, "hello from stdin")
	waitOutput(t, &out2, "hello from stdin")
	h.waitLog(cfg, "hello from stdin")

	// Detaching leaves the container running, its stdin open (no StdinOnce).
	a1.cancel()
	if err := a1.wait(t, "its context ended"); err != nil {
		t.Errorf("Attach after detach: %v", err)
	}
	inR2, inW2 := io.Pipe()
	var out3 testutil.SyncBuffer
	a3 := h.attach(cfg.ID, AttachIO{Stdin: inR2, Stdout: &out3})
	waitFor(t, 20*time.Second, "a new client's stdin to reach cat", func() bool {
		_, _ = inW2.Write([]byte("again\n"))
		return strings.Contains(out3.String(), "again")
	})
	if j, err := h.rt.Status(context.Background(), cfg.ID); err != nil || j.State != protocol.StateRunning || j.RestartCount != 0 {
		t.Errorf("after a detach: %+v %v", j, err)
	}
	a3.cancel()
	_ = a3.wait(t, "its context ended")

	// The run ends: the attached client returns.
	if _, err := h.rt.Stop(context.Background(), cfg.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := a2.wait(t, "the container stopped"); err != nil {
		t.Errorf("Attach when the run ended: %v", err)
	}
	if err := h.rt.Attach(context.Background(), cfg.ID, AttachIO{Stdout: io.Discard}); err == nil {
		t.Error("Attach to a stopped container succeeded")
	}
}

func TestRootAttachRefusesStdinWithoutStdin(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("nostdin", "Always", "echo up; sleep 3600"))
	cfg, _ := h.mustStart(pod, 0)
	h.waitLog(cfg, "up")
	err := h.rt.Attach(context.Background(), cfg.ID, AttachIO{Stdin: strings.NewReader("x\n"), Stdout: io.Discard})
	if !errors.Is(err, protocol.ErrInvalid) || !strings.Contains(err.Error(), "stdin") {
		t.Errorf("Attach with stdin to a container without: %v, want ErrInvalid", err)
	}
	// Output only is fine: the client sees what comes after it attached.
	var out testutil.SyncBuffer
	a := h.attach(cfg.ID, AttachIO{Stdout: &out})
	for i := 0; !strings.Contains(out.String(), "exec-output"); i++ {
		if i > 400 {
			t.Fatalf("attached client never saw the container's output; got %q", out.String())
		}
		// The container's own output: an exec writing to its init's stdout.
		_, _ = h.rt.Exec(context.Background(), cfg.ID, &protocol.ExecRequest{Args: []string{"sh", "-c", "echo exec-output > /proc/1/fd/1"}}, ExecIO{})
		time.Sleep(50 * time.Millisecond)
	}
	a.cancel()
	_ = a.wait(t, "its context ended")
}

// StdinOnce: the first client that attached stdin and went closes it; cat sees
// EOF and the container exits.
func TestRootAttachStdinOnce(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("stdinonce", "Never", "cat; echo cat-ended"))
	cfg := h.startWith(pod, func(c *protocol.ContainerConfig) { c.Process.Stdin, c.Process.StdinOnce = true, true })
	h.wait(cfg.ID, 20*time.Second, "running", func(j *protocol.Journal) bool { return j.State == protocol.StateRunning })

	inR, inW := io.Pipe()
	var out testutil.SyncBuffer
	a := h.attach(cfg.ID, AttachIO{Stdin: inR, Stdout: &out})
	waitFor(t, 20*time.Second, "stdin to reach cat", func() bool {
		_, _ = inW.Write([]byte("once\n"))
		return strings.Contains(out.String(), "once")
	})
	// Going away without closing stdin is a detach too.
	a.cancel()
	_ = a.wait(t, "its context ended")
	j := h.wait(cfg.ID, 20*time.Second, "cat to end at its stdin's EOF", func(j *protocol.Journal) bool { return j.State == protocol.StateExited })
	if e := j.LastExit(); e == nil || e.ExitCode != 0 {
		t.Errorf("exit after StdinOnce detach: %+v", e)
	}
	h.waitLog(cfg, "cat-ended")
}

// A client that does not read loses output; the container and its log go on.
func TestRootAttachSlowClientDoesNotBlockLog(t *testing.T) {
	h := newHarness(t)
	h.rt.cfg.LogMaxSize = 1 << 40 // one file
	// 32 MB of output, far beyond the socket's buffer and the client's queue, once
	// the client is attached (the marker file), then a last line.
	pod := h.pod(podYAML("slowclient", "Always",
		"while [ ! -e /tmp/go ]; do sleep 0.05; done; yes 0123456789abcdef0123456789abcdef | head -c 33554400; echo all-written; sleep 3600"))
	cfg := h.startWith(pod, func(*protocol.ContainerConfig) {})
	h.wait(cfg.ID, 20*time.Second, "running", func(j *protocol.Journal) bool { return j.State == protocol.StateRunning })

	blocked := &blockingWriter{release: make(chan struct{}), wrote: make(chan struct{})}
	a := h.attach(cfg.ID, AttachIO{Stdout: blocked})
	// The client is attached once it is handed output; it then blocks on it.
	go func() {
		for i := 0; i < 400; i++ {
			select {
			case <-blocked.wrote:
				return
			default:
			}
			_, _ = h.rt.Exec(context.Background(), cfg.ID, &protocol.ExecRequest{Args: []string{"sh", "-c", "echo attached > /proc/1/fd/1"}}, ExecIO{})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	select {
	case <-blocked.wrote:
	case <-time.After(30 * time.Second):
		t.Fatal("the attached client never got output")
	}
	if code, err := h.rt.Exec(context.Background(), cfg.ID, &protocol.ExecRequest{Args: []string{"touch", "/tmp/go"}}, ExecIO{}); err != nil || code != 0 {
		t.Fatalf("touch /tmp/go: %d %v", code, err)
	}
	start := time.Now()
	h.waitLogLong(cfg, "all-written", 120*time.Second)
	t.Logf("32 MiB logged in %s with a client that reads nothing", time.Since(start).Round(time.Millisecond))
	close(blocked.release)
	a.cancel()
	if err := a.wait(t, "the client was released"); err != nil {
		t.Logf("Attach of the slow client: %v", err)
	}
	// Every byte reached the log.
	b, err := os.ReadFile(filepath.Join(cfg.Log.Dir, "0.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("0123456789abcdef0123456789abcdef")); n != 33554400/33 {
		t.Errorf("log holds %d of %d lines", n, 33554400/33)
	}
}

// blockingWriter blocks every Write after the first until release is closed.
type blockingWriter struct {
	release chan struct{}
	wrote   chan struct{}
	first   bool
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if !w.first {
		w.first = true
		close(w.wrote)
	}
	<-w.release
	return len(p), nil
}

// waitLogLong is waitLog with a longer deadline, reading only the file's end.
func (h *harness) waitLogLong(cfg *protocol.ContainerConfig, text string, timeout time.Duration) {
	h.t.Helper()
	path := filepath.Join(cfg.Log.Dir, "0.log")
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f, err := os.Open(path); err == nil {
			st, _ := f.Stat()
			buf := make([]byte, 4096)
			off := max(st.Size()-int64(len(buf)), 0)
			n, _ := f.ReadAt(buf, off)
			f.Close()
			if bytes.Contains(buf[:n], []byte(text)) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("%s never logged %q", cfg.ID, text)
}

// A terminal: resized by the client, TERM=xterm, its output logged as stdout.
func TestRootAttachTty(t *testing.T) {
	h := newHarness(t)
	pod := h.pod(podYAML("tty", "Always", "exec sh"))
	cfg := h.startWith(pod, func(c *protocol.ContainerConfig) { c.Process.Stdin, c.Process.Tty = true, true })
	h.wait(cfg.ID, 20*time.Second, "running", func(j *protocol.Journal) bool { return j.State == protocol.StateRunning })

	inR, inW := io.Pipe()
	resize := make(chan [2]uint16, 1)
	var out testutil.SyncBuffer
	a := h.attach(cfg.ID, AttachIO{Stdin: inR, Stdout: &out, Resize: resize})
	resize <- [2]uint16{123, 45}
	waitFor(t, 20*time.Second, "the shell to answer on its terminal", func() bool {
		_, _ = inW.Write([]byte("echo \"size=$(stty size) term=$TERM\"\n"))
		return strings.Contains(out.String(), "size=45 123 term=xterm")
	})
	h.waitLog(cfg, "size=45 123 term=xterm")
	a.cancel()
	_ = a.wait(t, "its context ended")
}
