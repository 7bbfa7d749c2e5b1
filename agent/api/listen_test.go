package api_test

import (
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

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/api/apitest"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestListen: the socket is the owner's only; a live one (another agentd) is left alone; a stale one is replaced;
// Close removes it.
func TestListen(t *testing.T) {
	ts := newTestServer(t)
	fi, err := os.Stat(ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket of mode 0600", fi.Mode())
	}

	_, err = api.Listen(ts.sock, apitest.NewFakeBackend(), newLogLines().logger())
	if err == nil || !strings.Contains(err.Error(), "another agentd is listening on "+ts.sock) {
		t.Errorf("Listen on a live socket: %v, want an error naming it", err)
	}
	if _, err := ts.c.Version(testCtx(t)); err != nil {
		t.Errorf("the first server stopped answering after a second one tried its socket: %v", err)
	}

	if err := ts.server.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(ts.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after Close: %v, want it removed", err)
	}
	if _, err := ts.c.Version(testCtx(t)); !errors.Is(err, api.ErrUnreachable) {
		t.Errorf("client after Close: %v, want ErrUnreachable", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false) // as an agentd that crashed leaves it
	l.Close()
	if _, err := os.Lstat(sock); err != nil {
		t.Fatal(err)
	}
	f := apitest.NewFakeBackend()
	f.InfoValue.ServerVersion = "v9"
	s, err := api.Listen(sock, f, newLogLines().logger())
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s.Close()
	if v, err := api.NewClient(sock).Version(testCtx(t)); err != nil || v.Version != "v9" {
		t.Errorf("Version = %v, %v; want v9", v, err)
	}
}

// peerHelperEnv names the socket TestPeerHelper connects to when TestRootPeerCredentials runs it as another user.
const peerHelperEnv = "AGENTD_API_TEST_PEER_SOCKET"

// TestPeerHelper is not a test: TestRootPeerCredentials runs the test binary as another user to call the API.
func TestPeerHelper(t *testing.T) {
	sock := os.Getenv(peerHelperEnv)
	if sock == "" {
		t.Skip("a helper of TestRootPeerCredentials")
	}
	_, err := api.NewClient(sock).Version(testCtx(t))
	fmt.Printf("RESULT unreachable=%v lost=%v err=%v\n", errors.Is(err, api.ErrUnreachable), errors.Is(err, api.ErrConnectionLost), err)
}

// TestRootPeerCredentials: a user other than root and agentd's own is refused, by the socket's mode and, where the
// mode lets it connect, by its peer credentials; agentd logs the refusal.
func TestRootPeerCredentials(t *testing.T) {
	testutil.RequiresRoot(t)
	const nobody = 65534
	// The test binary and the socket in a directory another user can reach (t.TempDir's parent is 0700).
	dir, err := os.MkdirTemp("", "agentd-api-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "api.test")
	copyFile(t, bin)
	sock := filepath.Join(dir, "agent.sock")
	log := newLogLines()
	s, err := api.Listen(sock, apitest.NewFakeBackend(), log.logger())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	asNobody := func() string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^TestPeerHelper$", "-test.count=1")
		cmd.Env = []string{peerHelperEnv + "=" + sock, "PATH=/usr/bin:/bin"}
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper as uid %d: %v\n%s", nobody, err, out)
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "RESULT ") {
				return line
			}
		}
		t.Fatalf("helper as uid %d said no RESULT:\n%s", nobody, out)
		return ""
	}

	// The socket's mode keeps the user out.
	if got := asNobody(); !strings.Contains(got, "unreachable=true") || !strings.Contains(got, "permission denied") {
		t.Errorf("another user on the 0600 socket: %s, want ErrUnreachable, permission denied", got)
	}
	// Where the mode does not (a socket made reachable by mistake), the peer check does: the connection is closed
	// before an answer.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := asNobody(); !strings.Contains(got, "lost=true") {
		t.Errorf("another user on a 0666 socket: %s, want the connection refused (ErrConnectionLost)", got)
	}
	log.wait(t, "Refused a connection", fmt.Sprintf(`"uid"=%d`, nobody))
	// Root still gets in.
	if _, err := api.NewClient(sock).Version(testCtx(t)); err != nil {
		t.Errorf("root: %v", err)
	}
}

// copyFile copies the running test binary to dst, executable by everyone.
func copyFile(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
