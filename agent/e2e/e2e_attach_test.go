package e2e

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// attachCmd is `agentctl attach ARGS` started against a, with stdin from in.
func (a *agent) attachCmd(ctx context.Context, in io.Reader, args ...string) (*exec.Cmd, *testutil.SyncBuffer, *testutil.SyncBuffer) {
	a.t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(a.bin, "agentctl"), append([]string{"attach"}, args...)...)
	cmd.Env = append(os.Environ(), "AGENT_SOCKET="+a.socket)
	var out, errOut testutil.SyncBuffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = in, &out, &errOut
	cmd.WaitDelay = 5 * time.Second // a killed agentctl's stdin copy must not hold Wait
	if err := cmd.Start(); err != nil {
		a.t.Fatal(err)
	}
	return cmd, &out, &errOut
}

// TestE2EAttach: agentctl attach -i reaches a container's stdin (stdin: true) and
// shows its output, as kubectl attach does; stdinOnce ends the container's stdin
// with the first session; a container without stdin refuses -i, and one without a
// terminal refuses -t with kubectl's message.
func TestE2EAttach(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("cat.yaml", `apiVersion: v1
kind: Pod
metadata: {name: cat}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["cat"]
    stdin: true
`)
	a.write("once.yaml", `apiVersion: v1
kind: Pod
metadata: {name: once}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "cat; echo cat-ended"]
    stdin: true
    stdinOnce: true
`)
	a.write("nostdin.yaml", simplePod("nostdin", "exec sleep 1000"))
	for _, p := range []string{"cat", "once", "nostdin"} {
		a.waitStatus(p, "Running", 60*time.Second)
	}

	t.Run("stdin reaches cat and its output comes back", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		inR, inW := io.Pipe()
		cmd, out, errOut := a.attachCmd(ctx, inR, "-i", "cat")
		defer func() {
			inW.Close()
			_ = cmd.Process.Kill() // by pid: agentctl attach runs until the container ends
			_ = cmd.Wait()
		}()
		go func() { _, _ = inW.Write([]byte("hello through attach\n")) }()
		a.eventually(30*time.Second, "cat's echo through agentctl attach", func() (bool, string) {
			return strings.Contains(out.String(), "hello through attach"), "stdout: " + out.String() + "\nstderr: " + errOut.String()
		})
		if !strings.Contains(errOut.String(), "If you don't see a command prompt, try pressing enter.") {
			t.Errorf("agentctl attach did not say what kubectl says; stderr %q", errOut.String())
		}
		if logs := a.ctl("logs", "cat"); !strings.Contains(logs, "hello through attach") {
			t.Errorf("the container's log lacks what it echoed: %q", logs)
		}
	})

	t.Run("stdinOnce closes stdin with the first session", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		// Stdin ends after one line: the session's stdin is done, cat sees EOF,
		// the container ends and with it the attach.
		cmd, out, errOut := a.attachCmd(ctx, strings.NewReader("only once\n"), "-i", "-q", "once")
		if err := cmd.Wait(); err != nil {
			t.Fatalf("agentctl attach -i once: %v\nstdout %q\nstderr %q", err, out.String(), errOut.String())
		}
		if !strings.Contains(out.String(), "only once") {
			t.Errorf("stdout %q lacks the line cat echoed", out.String())
		}
		a.waitStatus("once", "Completed", 60*time.Second)
		if logs := a.ctl("logs", "once"); !strings.Contains(logs, "only once\ncat-ended") {
			t.Errorf("log of once: %q", logs)
		}
	})

	t.Run("a container without stdin refuses -i", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd, out, errOut := a.attachCmd(ctx, strings.NewReader("x\n"), "-i", "nostdin")
		err := cmd.Wait()
		if err == nil || !strings.Contains(errOut.String(), "does not keep its stdin open (stdin: true)") {
			t.Errorf("agentctl attach -i nostdin: %v\nstdout %q\nstderr %q", err, out.String(), errOut.String())
		}
	})

	t.Run("a container without a terminal refuses -t as kubectl does", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd, _, errOut := a.attachCmd(ctx, nil, "-t", "nostdin")
		defer func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}()
		a.eventually(30*time.Second, "kubectl's message for -t", func() (bool, string) {
			return strings.Contains(errOut.String(), "error: Unable to use a TTY - container main did not allocate one"), errOut.String()
		})
	})

	t.Run("a completed pod", func(t *testing.T) {
		out, err := a.try("attach", "once")
		if err == nil || !strings.Contains(out, "cannot attach a container in a completed pod; current phase is Succeeded") {
			t.Errorf("agentctl attach once (completed): %v %q", err, out)
		}
	})
}
