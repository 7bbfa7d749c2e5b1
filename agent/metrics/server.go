package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
)

// Server serves a Metrics' Handler over plain HTTP, as kubelet's read-only
// port does: anyone who can reach the address can read it (pod names,
// namespaces and their usage; nothing else), which is why the default address
// is on loopback.
type Server struct {
	l   net.Listener
	srv *http.Server
}

// Listen serves h on addr (host:port; port 0 picks a free one, see Addr).
func Listen(addr string, h http.Handler, log logr.Logger) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics-address %s: %w", addr, err)
	}
	s := &Server{l: l, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute}}
	go func() {
		if err := s.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error(err, "Metrics server stopped", "address", addr)
		}
	}()
	return s, nil
}

// Addr is the address served.
func (s *Server) Addr() net.Addr { return s.l.Addr() }

// Close stops serving, letting scrapes under way finish for a second.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	return s.srv.Close()
}
