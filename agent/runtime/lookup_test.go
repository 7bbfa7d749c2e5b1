package runtime

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func TestReadStateFile(t *testing.T) {
	dir := t.TempDir()
	big := strings.Repeat("x", 20<<10) // more than the first buffer
	for name, want := range map[string]string{"empty": "", "small": `{"a":1}`, "big": big} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(want), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readStateFile(p)
		if err != nil || string(got) != want {
			t.Errorf("%s: got %d bytes, %v; want %d bytes", name, len(got), err, len(want))
		}
	}
	if _, err := readStateFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v, want ErrNotExist", err)
	}
	// A FIFO planted in a state directory does not block the reader.
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := readStateFile(fifo); err != nil || len(got) != 0 {
		t.Errorf("FIFO: %q, %v; want nothing", got, err)
	}
	// A symlink planted in place of a state file is not followed, and a file too
	// large for one (/dev/zero behind a bind mount, say) is not read to its end.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "small"), link); err != nil {
		t.Fatal(err)
	}
	if got, err := readStateFile(link); !errors.Is(err, unix.ELOOP) {
		t.Errorf("symlink: %q, %v; want ELOOP", got, err)
	}
	if got, err := readStateFile("/dev/zero"); err == nil {
		t.Errorf("/dev/zero: read %d bytes without an error", len(got))
	}
	var j protocol.Journal
	if err := readStateJSON(filepath.Join(dir, "small"), &j); err != nil {
		t.Errorf("small: %v", err)
	}
	if err := readStateJSON(filepath.Join(dir, "big"), &j); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "big")) {
		t.Errorf("big: %v, want a JSON error naming the file", err)
	}
}

func TestLockedLikeProtocol(t *testing.T) {
	dir := t.TempDir()
	if locked(dir) || protocol.Locked(dir) {
		t.Fatal("no lock file: locked")
	}
	f, err := protocol.Lock(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !locked(dir) {
		t.Error("held lock: not locked")
	}
	f.Close()
	if locked(dir) {
		t.Error("released lock: locked")
	}
}

// fakeHelloServer serves a monitor's control socket in a state dir of its own: it
// answers Hello with reply (nothing when reply is ""), once per connection.
func fakeHelloServer(t *testing.T, r *Runtime, id, reply string) {
	t.Helper()
	dir := r.stateDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", filepath.Join(dir, protocol.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { l.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil && strings.Contains(line, `"protocol"`) && reply != "" {
				_, _ = c.Write([]byte(reply))
			}
			if reply == "" {
				// Says nothing until the client gives up.
				_, _ = c.Read(make([]byte, 1))
			}
			c.Close()
		}
	}()
}

func TestHello(t *testing.T) {
	r := &Runtime{cfg: Config{Settings: Settings{RunDir: t.TempDir()}}}
	ok := `{"protocol":"` + protocol.Name + `","major":` + strconv.Itoa(protocol.Major) + `,"minor":0,"id":"a","pid":42,"startTime":7}` + "\n"
	fakeHelloServer(t, r, "ok", ok)
	fakeHelloServer(t, r, "old", `{"protocol":"`+protocol.Name+`","major":-1,"minor":0,"id":"old","pid":42,"startTime":7}`+"\n")
	fakeHelloServer(t, r, "mute", "")
	fakeHelloServer(t, r, "junk", "not json\n")
	fakeHelloServer(t, r, "huge", strings.Repeat(" ", protocol.MaxResponseLine+1)+"\n")
	ctx := context.Background()

	h, err := r.hello(ctx, "ok")
	if err != nil || h.Pid != 42 || h.StartTime != 7 || h.ID != "a" {
		t.Errorf("ok: %+v, %v", h, err)
	}
	if h, err := r.hello(ctx, "old"); !errors.Is(err, ErrIncompatible) || h == nil {
		t.Errorf("old: %+v, %v; want the reply and ErrIncompatible", h, err)
	}
	for _, id := range []string{"junk", "huge", "absent"} {
		if _, err := r.hello(ctx, id); !errors.Is(err, ErrMonitorGone) {
			t.Errorf("%s: %v, want ErrMonitorGone", id, err)
		}
	}
	tctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	begun := time.Now()
	if _, err := r.hello(tctx, "mute"); !errors.Is(err, ErrMonitorGone) {
		t.Errorf("mute: %v, want ErrMonitorGone", err)
	}
	if took := time.Since(begun); took > 5*time.Second {
		t.Errorf("mute: gave up after %s, want about the context's 200ms", took)
	}
	// Matches dial, which the rest of the runtime uses.
	c, dh, err := r.dial(ctx, "ok")
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if dh.Pid != h.Pid || dh.StartTime != h.StartTime || dh.ID != h.ID {
		t.Errorf("dial: %+v, hello: %+v", dh, h)
	}
}
