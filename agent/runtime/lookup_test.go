package runtime

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// fakeHelloServer serves monitor id's control socket (its state dir is made when
// missing): it answers Hello with reply (nothing when reply is ""), once per
// connection, until stop or the test's end.
func fakeHelloServer(t *testing.T, r *Runtime, id, reply string) (stop func()) {
	t.Helper()
	dir := r.stateDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	addr, release, err := protocol.SocketAddr(dir) // a harness's state dir may be too long a path
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", addr)
	release()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	stop = sync.OnceFunc(func() { l.Close(); <-done })
	t.Cleanup(stop)
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
	return stop
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
