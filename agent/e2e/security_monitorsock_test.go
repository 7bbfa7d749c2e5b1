package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/internal/testutil"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// The non-root client is this test binary, run again as nobody with these set.
const (
	helperModeEnv   = "AGENTD_E2E_CLIENT_MODE" // "hello": handshake and report; "hold": connect and wait for EOF
	helperSocketEnv = "AGENTD_E2E_CLIENT_SOCKET"
	nobody          = 65534
)

// TestMonitorClientHelper is not a test: it is the non-root client the tests below
// start (as nobody) to speak to a monitor. It prints one line: what happened.
func TestMonitorClientHelper(t *testing.T) {
	mode, sock := os.Getenv(helperModeEnv), os.Getenv(helperSocketEnv)
	if mode == "" {
		t.Skip("run by TestE2EMonitorSocketRootOnly as another user")
	}
	c, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		fmt.Printf("result: dial failed: %v\n", err)
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if mode == "hold" {
		fmt.Println("result: connected")
		_, err := io.Copy(io.Discard, c)
		fmt.Printf("result: closed: %v\n", err)
		return
	}
	hello, _ := json.Marshal(&protocol.Hello{Protocol: protocol.Name, Major: protocol.Major, Minor: protocol.Minor})
	_, _ = c.Write(append(hello, '\n'))
	line, err := bufio.NewReader(c).ReadString('\n')
	switch {
	case err == nil:
		fmt.Printf("result: served: %s", line)
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		fmt.Printf("result: refused: %v\n", err)
	default:
		fmt.Printf("result: error: %v\n", err)
	}
}

// nonRootClient is this test binary copied where nobody may run it.
type nonRootClient struct {
	t   *testing.T
	bin string
}

func newNonRootClient(t *testing.T) *nonRootClient {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "e2e-client-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return &nonRootClient{t: t, bin: bin}
}

// command returns the client, as nobody, in mode against sock.
func (c *nonRootClient) command(mode, sock string) *exec.Cmd {
	cmd := exec.Command(c.bin, "-test.run=^TestMonitorClientHelper$", "-test.count=1")
	cmd.Env = []string{helperModeEnv + "=" + mode, helperSocketEnv + "=" + sock, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	return cmd
}

// result runs the client to its end and returns its result line.
func (c *nonRootClient) result(mode, sock string) string {
	c.t.Helper()
	out, err := c.command(mode, sock).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if r, ok := strings.CutPrefix(line, "result: "); ok {
			return r
		}
	}
	c.t.Fatalf("the non-root client printed no result: %v\n%s", err, out)
	return ""
}

// TestE2EMonitorSocketRootOnly: a monitor's control socket (and the exec helper it
// hands connections to) serves root only, by the client's credentials, not only by
// directory modes: with the modes opened to everyone, a client running as nobody is
// refused, and root is still served within 2 s.
func TestE2EMonitorSocketRootOnly(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("sleeper.yaml", simplePod("sleeper", "trap 'exit 0' TERM; while true; do sleep 0.1 & wait; done"))
	a.waitStatus("sleeper", "Running", 90*time.Second)
	p := a.pod("sleeper")
	sock := a.monitorSocket(p, "main")
	if len(sock) > 107 {
		t.Skipf("socket path %s too long for a plain dial", sock)
	}
	// Open the way: every directory searchable, the socket writable by all, as a
	// careless umask or a mistaken chmod could leave them.
	for d := filepath.Dir(sock); strings.HasPrefix(d, a.dir); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	client := newNonRootClient(t)

	if got := client.result("hello", sock); !strings.HasPrefix(got, "refused") {
		t.Errorf("a client running as nobody: %s; want refused", got)
	}
	took := a.requireStatusWithin(p, "main", 2*time.Second)
	t.Logf("root is served %v after nobody was refused", took)

	// A refused client that keeps its end open does not hold up the monitor.
	hold := client.command("hold", sock)
	var out testutil.SyncBuffer
	hold.Stdout, hold.Stderr = &out, &out
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- hold.Wait() }()
	select {
	case <-waited:
		if !strings.Contains(out.String(), "result: closed") {
			t.Errorf("the holding client: %s", out.String())
		}
	case <-time.After(10 * time.Second):
		_ = hold.Process.Kill()
		<-waited
		t.Errorf("the monitor kept a nobody client's connection open for 10 s: %s", out.String())
	}
	a.requireStatusWithin(p, "main", 2*time.Second)

	// The exec helper checks its connection's client too: handed a connection from
	// nobody, it runs nothing.
	testExecHelperRefusesNonRoot(t, a, p, client)
	if out, err := a.try("exec", "sleeper", "--", "test", "-e", "/tmp/exec-by-nobody"); err == nil {
		t.Errorf("the exec helper ran a command for nobody's connection: %s", out)
	}
	a.requireStatusWithin(p, "main", 2*time.Second)
}

func testExecHelperRefusesNonRoot(t *testing.T, a *agent, p *corev1.Pod, client *nonRootClient) {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-sock-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "s.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	hold := client.command("hold", sock)
	var out testutil.SyncBuffer
	hold.Stdout, hold.Stderr = &out, &out
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = hold.Process.Kill()
		_ = hold.Wait()
	}()
	_ = l.SetDeadline(time.Now().Add(30 * time.Second))
	conn, err := l.AcceptUnix()
	if err != nil {
		t.Fatalf("the nobody client did not connect: %v\n%s", err, out.String())
	}
	defer conn.Close()
	f, err := conn.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	j := a.journal(p, "main")
	spec, _ := json.Marshal(&protocol.ExecRequest{Args: []string{"sh", "-c", "echo pwned > /tmp/exec-by-nobody"}})
	helper := exec.Command(filepath.Join(a.bin, "agent-monitor"), "exec",
		"--state-dir", filepath.Dir(a.monitorSocket(p, "main")), "--container-id", j.Current().ContainerID, "--spec", string(spec))
	helper.ExtraFiles = []*os.File{f}
	res, err := helper.CombinedOutput()
	if err == nil || !strings.Contains(string(res), "not root") {
		t.Errorf("agent-monitor exec with nobody's connection: %v\n%s", err, res)
	}
}
