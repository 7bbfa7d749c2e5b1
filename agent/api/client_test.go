package api

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
)

// TestClientErrors: no one listening is ErrUnreachable (agentctl then works
// without agentd); a connection that breaks before the answer is not, so that an
// import agentd was carrying out when it died is not done a second time
// elsewhere.
func TestClientErrors(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	c := NewClient(sock)
	_, err := c.ImportImage(context.Background(), "/nonexistent.tar")
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("no socket: %v, want ErrUnreachable", err)
	}

	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 512)
			_, _ = conn.Read(buf) // the request arrives; agentd dies before it answers
			conn.Close()
		}
	}()
	_, err = c.ImportImage(context.Background(), "/nonexistent.tar")
	if errors.Is(err, ErrUnreachable) || !errors.Is(err, ErrConnectionLost) {
		t.Errorf("connection closed before the answer: %v, want ErrConnectionLost", err)
	}
}
