package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	clientexec "k8s.io/client-go/util/exec"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"
	utilexec "k8s.io/utils/exec"
)

// criRunBusybox runs a sandbox (with the pod network) and one busybox container in it running cmd, through the
// CRI, and waits for it to run; the sandbox is removed at the end of the test.
func criRunBusybox(t *testing.T, ctx context.Context, a *agent, rt internalapi.RuntimeService, name string, cmd ...string) (sandbox, container string) {
	t.Helper()
	a.eventually(60*time.Second, "NetworkReady", func() (bool, string) {
		st, err := rt.Status(ctx, false)
		if err != nil {
			return false, err.Error()
		}
		for _, c := range st.GetStatus().GetConditions() {
			if c.Type == runtimeapi.NetworkReady && c.Status {
				return true, ""
			}
		}
		return false, st.String()
	})
	sbConfig := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "default", Uid: "uid-" + name},
		LogDirectory: filepath.Join(a.dir, "cri-logs", name),
		Linux:        &runtimeapi.LinuxPodSandboxConfig{},
	}
	if err := os.MkdirAll(sbConfig.LogDirectory, 0o700); err != nil { // kubelet makes it
		t.Fatal(err)
	}
	sandbox, err := rt.RunPodSandbox(ctx, sbConfig, "")
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, a.stderr)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := rt.StopPodSandbox(ctx, sandbox); err != nil {
			t.Errorf("StopPodSandbox: %v", err)
		}
		if err := rt.RemovePodSandbox(ctx, sandbox); err != nil {
			t.Errorf("RemovePodSandbox: %v", err)
		}
	})
	container, err = rt.CreateContainer(ctx, sandbox, &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "main"},
		Image:    &runtimeapi.ImageSpec{Image: "localhost/busybox:latest"},
		Command:  cmd,
		LogPath:  "main.log",
	}, sbConfig)
	if err != nil {
		t.Fatalf("CreateContainer: %v\n%s", err, a.stderr)
	}
	if err := rt.StartContainer(ctx, container); err != nil {
		t.Fatalf("StartContainer: %v\n%s", err, a.stderr)
	}
	a.eventually(60*time.Second, "the container running", func() (bool, string) {
		st, err := rt.ContainerStatus(ctx, container, false)
		if err != nil {
			return false, err.Error()
		}
		return st.GetStatus().GetState() == runtimeapi.ContainerState_CONTAINER_RUNNING, st.GetStatus().String()
	})
	return sandbox, container
}

// criStream runs an exec or attach URL with client-go's SPDY executor, as crictl and kubelet do.
func criStream(ctx context.Context, rawURL string, opts remotecommand.StreamOptions) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, opts)
}

// TestE2ECRIStream: ExecSync's exact output and exit code; its timeout fails with DeadlineExceeded (cri-client's
// ErrCommandTimedOut) and the command is gone; Exec through the URL agentd hands out (client-go's remotecommand, with
// and without a tty); PortForward to a web server on the sandbox's loopback; exec into a stopped container fails
// with FailedPrecondition.
func TestE2ECRIStream(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rt, _ := criClients(t, ctx, filepath.Join(a.dir, "run", "cri.sock"))
	// A web server on the pod's loopback only: what PortForward reaches, and not from the host.
	sandbox, c := criRunBusybox(t, ctx, a, rt, "stream",
		"sh", "-c", "mkdir -p /www && echo -n hello-from-the-pod >/www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www")

	// ExecSync: exact output, exit code.
	stdout, stderr, err := rt.ExecSync(ctx, c, []string{"sh", "-c", "echo -n hello; echo -n oops >&2"}, 30*time.Second)
	if err != nil || string(stdout) != "hello" || string(stderr) != "oops" {
		t.Errorf("ExecSync = %q, %q, %v; want \"hello\", \"oops\", nil", stdout, stderr, err)
	}
	_, _, err = rt.ExecSync(ctx, c, []string{"sh", "-c", "exit 7"}, 30*time.Second)
	var ce utilexec.CodeExitError
	if !errors.As(err, &ce) || ce.Code != 7 {
		t.Errorf("ExecSync exit 7: %v, want exit code 7", err)
	}
	// A command that cannot start is an error naming it (containerd's is "OCI runtime exec failed: ..."), not an exit code.
	_, _, err = rt.ExecSync(ctx, c, []string{"/no/such/command"}, 30*time.Second)
	if status.Code(err) == codes.OK || !strings.Contains(err.Error(), "/no/such/command") {
		t.Errorf("ExecSync of a missing command: %v, want an error naming it", err)
	}

	// ExecSync timeout: the RPC fails as a timeout within about the timeout, and the process is killed.
	start := time.Now()
	_, _, err = rt.ExecSync(ctx, c, []string{"sh", "-c", "echo $$ >/tmp/sleeper.pid; exec sleep 300"}, time.Second)
	if took := time.Since(start); !errors.Is(err, remote.ErrCommandTimedOut) || took > 15*time.Second {
		t.Errorf("ExecSync sleep 300 with a 1s timeout: %v after %v; want ErrCommandTimedOut (DeadlineExceeded) soon", err, took)
	}
	pid, _, err := rt.ExecSync(ctx, c, []string{"cat", "/tmp/sleeper.pid"}, 30*time.Second)
	if err != nil || len(bytes.TrimSpace(pid)) == 0 {
		t.Fatalf("the timed-out command wrote no pid file: %q, %v", pid, err)
	}
	a.eventually(30*time.Second, "the timed-out command gone", func() (bool, string) {
		// kill -0 fails once the process is gone (pids are not reused this soon in the container's pid namespace).
		out, _, err := rt.ExecSync(ctx, c, []string{"sh", "-c", "kill -0 " + string(bytes.TrimSpace(pid)) + " 2>&1; ps"}, 30*time.Second)
		return err == nil && strings.Contains(string(out), "PID") && !strings.Contains(string(out), "sleep 300") &&
			!strings.Contains(string(out), "<defunct>"), fmt.Sprintf("%q, %v", out, err)
	})

	// Exec through the URL: stdout and stderr apart, the exit code.
	resp, err := rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: c, Cmd: []string{"sh", "-c", "echo -n out; echo -n err >&2; exit 5"}, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := url.Parse(resp.Url); err != nil || u.Scheme != "http" || !strings.HasPrefix(u.Host, "127.0.0.1:") || strings.HasSuffix(u.Host, ":0") {
		t.Errorf("exec URL %q: want http://127.0.0.1:<the port it listens on>/...", resp.Url)
	}
	var out, errOut bytes.Buffer
	err = criStream(ctx, resp.Url, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
	var cce clientexec.CodeExitError
	if !errors.As(err, &cce) || cce.Code != 5 || out.String() != "out" || errOut.String() != "err" {
		t.Errorf("exec through the URL: %v, stdout %q, stderr %q; want exit code 5, \"out\", \"err\"", err, out.String(), errOut.String())
	}
	// A URL is used once.
	if err := criStream(ctx, resp.Url, remotecommand.StreamOptions{Stdout: io.Discard}); err == nil {
		t.Error("an exec URL worked twice")
	}

	// A client that goes away: the command is killed (at its next output) rather than left running.
	resp, err = rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: c, Stdout: true,
		Cmd: []string{"sh", "-c", "echo $$ >/tmp/ticker.pid; while true; do echo tick; sleep 0.1; done"}})
	if err != nil {
		t.Fatal(err)
	}
	tick := &watchWriter{want: "tick", found: make(chan struct{})}
	found := tick.found
	cctx, leave := context.WithCancel(ctx)
	streamed := make(chan error, 1)
	go func() { streamed <- criStream(cctx, resp.Url, remotecommand.StreamOptions{Stdout: tick}) }()
	select {
	case <-found:
	case err := <-streamed:
		t.Fatalf("the ticker exec ended: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("no output from the ticker exec in 60s")
	}
	leave()
	<-streamed
	tpid, _, err := rt.ExecSync(ctx, c, []string{"cat", "/tmp/ticker.pid"}, 30*time.Second)
	if err != nil || len(bytes.TrimSpace(tpid)) == 0 {
		t.Fatalf("the ticker wrote no pid file: %q, %v", tpid, err)
	}
	a.eventually(30*time.Second, "the exec whose client left gone", func() (bool, string) {
		out, _, err := rt.ExecSync(ctx, c, []string{"sh", "-c", "kill -0 " + string(bytes.TrimSpace(tpid)) + " 2>&1; ps"}, 30*time.Second)
		return err == nil && strings.Contains(string(out), "PID") && !strings.Contains(string(out), "ticker"), fmt.Sprintf("%q, %v", out, err)
	})

	// With a tty and stdin, as `crictl exec -it` and kubectl exec -it.
	resp, err = rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: c, Cmd: []string{"sh", "-c", "tty; read line; echo got:$line"}, Stdin: true, Stdout: true, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := criStream(ctx, resp.Url, remotecommand.StreamOptions{Stdin: strings.NewReader("typed\n"), Stdout: &out, Tty: true}); err != nil {
		t.Errorf("exec with a tty: %v (output %q)", err, out.String())
	}
	if !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "got:typed") {
		t.Errorf("exec with a tty printed %q, want a /dev/pts/ tty and got:typed", out.String())
	}

	// PortForward to the web server on the sandbox's loopback.
	pfResp, err := rt.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: sandbox, Port: []int32{8080}})
	if err != nil {
		t.Fatal(err)
	}
	body := criPortForwardGet(t, pfResp.Url, 8080, "/index.html")
	if body != "hello-from-the-pod" {
		t.Errorf("GET through the port forward: %q, want hello-from-the-pod", body)
	}

	// A stopped container: no exec.
	if err := rt.StopContainer(ctx, c, 10); err != nil {
		t.Fatal(err)
	}
	_, _, err = rt.ExecSync(ctx, c, []string{"true"}, 30*time.Second)
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("ExecSync in a stopped container: %v, want FailedPrecondition", err)
	}
	_, err = rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: c, Cmd: []string{"true"}, Stdout: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Exec in a stopped container: %v, want FailedPrecondition", err)
	}
}

// criPortForwardGet forwards a local port to port through a PortForward URL with client-go's port forwarder (as
// crictl and kubectl do) and GETs path through it.
func criPortForwardGet(t *testing.T, rawURL string, port int, path string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
	stop, ready := make(chan struct{}), make(chan struct{})
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	forwarded := make(chan error, 1)
	go func() { forwarded <- pf.ForwardPorts() }()
	defer func() {
		close(stop)
		if err := <-forwarded; err != nil {
			t.Errorf("ForwardPorts: %v", err)
		}
	}()
	select {
	case <-ready:
	case err := <-forwarded:
		t.Fatalf("ForwardPorts: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("the port forward did not become ready")
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
	r, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", ports[0].Local, path))
	if err != nil {
		t.Fatalf("GET through the port forward: %v", err)
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// watchWriter collects output and closes found once it contains want.
type watchWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	want  string
	found chan struct{}
}

func (w *watchWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if w.found != nil && strings.Contains(w.buf.String(), w.want) {
		close(w.found)
		w.found = nil
	}
	return len(p), nil
}

// TestE2ECRIAttach: Attach's URL streams what the container writes from then on; a client's stdin is dropped for a
// container created without stdin (as containerd does) instead of failing the attach; detaching leaves the
// container running.
func TestE2ECRIAttach(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rt, _ := criClients(t, ctx, filepath.Join(a.dir, "run", "cri.sock"))
	_, c := criRunBusybox(t, ctx, a, rt, "attach", "sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")

	resp, err := rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: c, Stdin: true, Stdout: true, Stderr: true})
	if err != nil {
		t.Fatal(err)
	}
	out := &watchWriter{want: "tick", found: make(chan struct{})}
	found := out.found
	stdin, stdinW := io.Pipe()
	defer stdinW.Close()
	actx, detach := context.WithCancel(ctx)
	defer detach()
	streamed := make(chan error, 1)
	go func() {
		streamed <- criStream(actx, resp.Url, remotecommand.StreamOptions{Stdin: stdin, Stdout: out, Stderr: io.Discard})
	}()
	select {
	case <-found:
	case err := <-streamed:
		t.Fatalf("attach ended before any output: %v (output %q)", err, out.buf.String())
	case <-time.After(60 * time.Second):
		t.Fatal("no output through the attach in 60s")
	}
	detach()
	select {
	case <-streamed:
	case <-time.After(30 * time.Second):
		t.Fatal("the attach did not end when the client detached")
	}
	st, err := rt.ContainerStatus(ctx, c, false)
	if err != nil || st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("after the detach the container is %v (%v), want running", st.GetStatus().GetState(), err)
	}
}
