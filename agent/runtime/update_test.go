package runtime

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// TestUpdateOldMonitor: a monitor whose handshake lacks the update capability
// (protocol 1.1) is not sent the request: Update says at once that it cannot,
// with protocol.ErrUnsupported, instead of waiting on a monitor that would
// not know the op.
func TestUpdateOldMonitor(t *testing.T) {
	dir := t.TempDir()
	r := &Runtime{cfg: Config{Settings: Settings{RunDir: dir}}, log: logr.Discard()}
	id := "u_c"
	sd := r.stateDir(id)
	if err := os.MkdirAll(sd, 0o700); err != nil {
		t.Fatal(err)
	}
	addr, done, err := protocol.SocketAddr(sd)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", addr)
	done()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	requests := make(chan string, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			br := bufio.NewReader(c)
			_, _ = br.ReadString('\n')
			_ = protocol.WriteMessage(c, &protocol.HelloReply{Protocol: protocol.Name, Major: 1, Minor: 1, ID: id,
				Capabilities: []string{protocol.OpStatus, protocol.OpStop, protocol.OpSignal, protocol.OpKill, protocol.OpReopenLog, protocol.OpExec, protocol.OpAttach}})
			line, err := br.ReadString('\n')
			if err == nil || err != io.EOF || line != "" {
				requests <- line
			}
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mem := int64(64 << 20)
	start := time.Now()
	_, err = r.Update(ctx, id, &protocol.Resources{MemoryLimit: &mem})
	if !errors.Is(err, protocol.ErrUnsupported) || !strings.Contains(err.Error(), "1.1") {
		t.Errorf("Update of a 1.1 monitor: %v, want ErrUnsupported naming its version", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Update took %s to give up", took)
	}
	select {
	case req := <-requests:
		t.Errorf("the old monitor was sent %q", req)
	default:
	}

	// Limits out of range never reach a monitor.
	bad := int64(-1)
	if _, err := r.Update(ctx, id, &protocol.Resources{MemoryLimit: &bad}); !errors.Is(err, protocol.ErrInvalid) {
		t.Errorf("Update with a negative memory limit: %v, want ErrInvalid", err)
	}
}
