package etcdmember

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamCloser ends the member's open client streams (watches, lease keepalives) when the member stops, and
// takes no new ones. etcd's graceful shutdown waits for them for its whole request timeout (over 5 s), and they
// never end by themselves; ended, their clients move on to another member at once.
//
// It also counts the requests stream handlers are working on (from receiving a message to sending the answer or
// receiving the next), so that the member can wait for them before etcd closes its database: etcd's lease
// keepalive handler leaves a goroutine behind that, with access control on, still reads the auth store, and after
// the database closed that read is a nil dereference that kills the process.
type streamCloser struct {
	mu       sync.Mutex      // guards the fields below
	closing  chan struct{}   // closed by stop
	stopped  bool            // streams refused
	closed   bool            // unary requests refused too (Close)
	stopping <-chan struct{} // etcd's: closed when the server begins to stop, by itself too (removed from the cluster)
	busy     int             // requests being worked on
}

func (s *streamCloser) setStopping(c <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopping = c
}

// refusing says whether requests (streams, or unary ones) are refused: stop was called, or etcd is stopping (its
// database may close under a request; with access control on, etcd then dereferences nil). Callers hold s.mu.
func (s *streamCloser) refusing(unary bool) bool {
	if unary && s.closed || !unary && s.stopped {
		return true
	}
	select {
	case <-s.stopping:
		return true
	default:
		return false
	}
}

// interceptUnary refuses requests while the member stops and counts the others as work.
func (s *streamCloser) interceptUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	s.mu.Lock()
	if s.refusing(true) {
		s.mu.Unlock()
		return nil, errMemberStopping
	}
	s.busy++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.busy--
		s.mu.Unlock()
	}()
	return handler(ctx, req)
}

var errMemberStopping = status.Error(codes.Unavailable, "etcd member is stopping")

func (s *streamCloser) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	s.mu.Lock()
	refusing, closing := s.refusing(false), s.closing
	s.mu.Unlock()
	if refusing {
		return errMemberStopping
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	go func() {
		select {
		case <-closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return handler(srv, &ctxStream{ServerStream: ss, ctx: ctx, s: s})
}

// stop ends the streams, refuses new requests on them (and unary ones too when unary), and waits, at most
// timeout, until none is being worked on. It may be called more than once.
func (s *streamCloser) stop(unary bool, timeout time.Duration) bool {
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.closing)
	}
	s.closed = s.closed || unary
	s.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		busy := s.busy
		s.mu.Unlock()
		if busy == 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// resume takes streams again after stop, when the member did not stop after all (its removal was refused).
func (s *streamCloser) resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped && !s.closed {
		s.stopped = false
		s.closing = make(chan struct{})
	}
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
	s   *streamCloser

	busy bool // a message was received and not yet answered; guarded by s.mu
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// RecvMsg hands a message to the handler only while the member is not stopping, and counts it as work.
func (s *ctxStream) RecvMsg(m any) error {
	s.idle()
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	if s.s.refusing(false) {
		return errMemberStopping
	}
	s.busy = true
	s.s.busy++
	return nil
}

func (s *ctxStream) SendMsg(m any) error {
	defer s.idle()
	return s.ServerStream.SendMsg(m)
}

func (s *ctxStream) idle() {
	s.s.mu.Lock()
	defer s.s.mu.Unlock()
	if s.busy {
		s.busy = false
		s.s.busy--
	}
}
