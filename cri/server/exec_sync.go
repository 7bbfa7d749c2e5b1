package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// MaxExecSyncOutput bounds each of ExecSync's stdout and stderr, as containerd
// bounds them (16 MiB): what a command writes past it is read and dropped, so
// the command neither blocks nor fails for it, and the response carries the
// first MaxExecSyncOutput bytes. kubelet's CRI client receives messages of up
// to 16 MiB, so a command that fills both streams gets a ResourceExhausted
// error there, as it would from containerd.
const MaxExecSyncOutput = 16 << 20

// ExecSync runs a command in a running container and returns its output and
// exit code once it exits. With a timeout (seconds), a command still running
// then is killed (the container's monitor kills the exec's process group when
// agentd's connection to it closes) and the RPC fails with DeadlineExceeded,
// which kubelet's CRI client reports as a timed-out command (its exec probes
// count it as a probe timeout).
func (s *Server) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if req.GetContainerId() == "" {
		return nil, fmt.Errorf("%w: ExecSync: no container_id", ErrInvalidArgument)
	}
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("%w: ExecSync in container %s: no cmd", ErrInvalidArgument, req.GetContainerId())
	}
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("%w: ExecSync in container %s: negative timeout %d", ErrInvalidArgument, req.GetContainerId(), req.GetTimeout())
	}
	ectx := ctx
	timeout := time.Duration(req.GetTimeout()) * time.Second
	if timeout > 0 {
		var cancel context.CancelFunc
		ectx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var stdout, stderr cappedBuffer
	code, err := s.b.Exec(ectx, req.GetContainerId(), &protocol.ExecRequest{Args: req.GetCmd()},
		protocol.ExecStreams{Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		if timeout > 0 && ctx.Err() == nil && errors.Is(ectx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("command %s in container %s: timeout %s exceeded, the command was killed: %w",
				quoteCmd(req.GetCmd()), req.GetContainerId(), timeout, context.DeadlineExceeded)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("command %s in container %s: %w", quoteCmd(req.GetCmd()), req.GetContainerId(), ctx.Err())
		}
		return nil, fmt.Errorf("ExecSync in container %s: %w", req.GetContainerId(), err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(code)}, nil
}

// quoteCmd renders a command for messages, at most 200 bytes of it.
func quoteCmd(cmd []string) string {
	s := fmt.Sprintf("%q", strings.Join(cmd, " "))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// cappedBuffer keeps the first MaxExecSyncOutput bytes written to it and
// drops the rest, never failing a write.
type cappedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := MaxExecSyncOutput - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *cappedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf
}
