package supervisor

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

func testClient(t *testing.T, req protocol.AttachRequest, queue int) *attachClient {
	t.Helper()
	// The hub only sets a write deadline on the connection; a zero one refuses it.
	return &attachClient{conn: &net.UnixConn{}, req: req, out: make(chan outFrame, queue)}
}

// The hub never waits: a full queue loses the read, counted; every client gets
// only the streams it asked for, and a copy the reader may not overwrite.
func TestAttachHubNeverBlocks(t *testing.T) {
	var h attachHub
	slow := testClient(t, protocol.AttachRequest{Stdout: true, Stderr: true}, 1)
	errOnly := testClient(t, protocol.AttachRequest{Stderr: true}, 4)
	if !h.add(slow) || !h.add(errOnly) {
		t.Fatal("add refused before the run ended")
	}
	buf := []byte("first\n")
	h.broadcast(protocol.FrameStdout, buf)
	copy(buf, "XXXXX\n")                                  // the reader reuses its buffer
	h.broadcast(protocol.FrameStdout, []byte("second\n")) // slow's queue is full: dropped
	h.broadcast(protocol.FrameStderr, []byte("oops\n"))   // dropped for slow too
	if f := <-slow.out; f.typ != protocol.FrameStdout || string(f.data) != "first\n" {
		t.Errorf("slow got %d %q", f.typ, f.data)
	}
	if n := slow.dropped.Load(); n != int64(len("second\n")+len("oops\n")) {
		t.Errorf("slow dropped %d bytes", n)
	}
	if f := <-errOnly.out; f.typ != protocol.FrameStderr || string(f.data) != "oops\n" {
		t.Errorf("stderr-only client got %d %q", f.typ, f.data)
	}
	if len(errOnly.out) != 0 {
		t.Errorf("stderr-only client got stdout")
	}

	h.remove(errOnly)
	if _, open := <-errOnly.out; open {
		t.Error("a removed client's queue is open")
	}
	h.end(3)
	if _, open := <-slow.out; open {
		t.Error("the run ended and a client's queue is open")
	}
	if code, ended := h.exitCode(); !ended || code != 3 {
		t.Errorf("exitCode = %d, %v", code, ended)
	}
	if h.add(testClient(t, protocol.AttachRequest{Stdout: true}, 1)) {
		t.Error("a client was added after the run ended")
	}
	h.broadcast(protocol.FrameStdout, []byte("late\n")) // no client, no panic
}

// teeReader hands every read to the hub and passes it on whole.
func TestTeeReader(t *testing.T) {
	var h attachHub
	c := testClient(t, protocol.AttachRequest{Stdout: true}, 64)
	h.add(c)
	var got bytes.Buffer
	if _, err := io.Copy(&got, teeReader{r: strings.NewReader("a\nb\n"), hub: &h, typ: protocol.FrameStdout}); err != nil {
		t.Fatal(err)
	}
	h.end(0)
	var seen bytes.Buffer
	for f := range c.out {
		seen.Write(f.data)
	}
	if got.String() != "a\nb\n" || seen.String() != "a\nb\n" {
		t.Errorf("reader passed %q, client saw %q", got.String(), seen.String())
	}
}
