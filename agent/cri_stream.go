package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"time"

	"github.com/go-logr/logr"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	agentruntime "github.com/agentd-project/agentd/agent/runtime"
	criserver "github.com/agentd-project/agentd/cri/server"
)

// serveCRIStreams starts s's streaming server (Exec, Attach, PortForward) on
// Options.CRIStreamAddress, or leaves it off when that is empty; s.Stop stops it.
func (a *Agent) serveCRIStreams(s *criserver.Server, log logr.Logger) error {
	addr := a.opts.CRIStreamAddress
	if addr == "" {
		log.Info("The CRI streaming server is off (cri.stream-address is empty): Exec, Attach and PortForward answer Unimplemented")
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("CRI streaming server on %s: %w", addr, err)
	}
	if err := s.ServeStreams(l, criserver.StreamOptions{}); err != nil {
		l.Close()
		return err
	}
	log.Info("Serving the CRI's streams (exec, attach, port forward)", "address", l.Addr().String())
	return nil
}

// CheckExec implements criserver.Backend: the container must be running, as
// its monitor's journal says.
func (b criBackend) CheckExec(_ context.Context, id string) error {
	_, err := b.runningContainer(id)
	return err
}

// runningContainer finds CRI container id and checks that it runs.
func (b criBackend) runningContainer(id string) (criContainerRef, error) {
	ref, err := b.a.criContainer(id)
	if err != nil {
		return ref, err
	}
	j, err := b.a.rt.Journal(ref.MonitorID)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return ref, fmt.Errorf("container %s was never started: %w", id, protocol.ErrNotRunning)
	case err != nil:
		return ref, fmt.Errorf("container %s: read its monitor's journal: %w", id, err)
	case j.State != protocol.StateRunning:
		return ref, fmt.Errorf("container %s is %s: %w", id, j.State, protocol.ErrNotRunning)
	}
	return ref, nil
}

// Exec implements criserver.Backend with the container monitor's exec: when
// ctx ends, agentd closes its connection to the monitor, which kills the
// exec's process group.
func (b criBackend) Exec(ctx context.Context, id string, req *protocol.ExecRequest, s protocol.ExecStreams) (int, error) {
	ref, err := b.runningContainer(id)
	if err != nil {
		return -1, err
	}
	code, err := b.a.rt.Exec(ctx, ref.MonitorID, req, agentruntime.ExecIO(s))
	if errors.Is(err, agentruntime.ErrMonitorGone) {
		return -1, fmt.Errorf("container %s: %w: %w", id, protocol.ErrNotRunning, err)
	}
	return code, err
}

// CheckAttach implements criserver.Backend: the container must be running.
// Whether its monitor can attach (a monitor from before the attach
// capability cannot: Unimplemented) shows when the stream opens.
func (b criBackend) CheckAttach(_ context.Context, id string) error {
	_, err := b.runningContainer(id)
	return err
}

// Attach implements criserver.Backend with the monitor's attach. As
// containerd does, a client's stdin is ignored (the attach goes on without
// it) when the container was not created with stdin: the monitor refuses
// stdin then, and Attach asks again without it.
func (b criBackend) Attach(ctx context.Context, id string, _ bool, s protocol.ExecStreams) error {
	ref, err := b.runningContainer(id)
	if err != nil {
		return err
	}
	err = b.a.rt.Attach(ctx, ref.MonitorID, agentruntime.AttachIO(s))
	if errors.Is(err, protocol.ErrInvalid) && s.Stdin != nil {
		s.Stdin = nil
		err = b.a.rt.Attach(ctx, ref.MonitorID, agentruntime.AttachIO(s))
	}
	if errors.Is(err, agentruntime.ErrMonitorGone) {
		return fmt.Errorf("container %s: %w: %w", id, protocol.ErrNotRunning, err)
	}
	return err
}

// CheckPortForward implements criserver.Backend: the sandbox must be ready.
func (b criBackend) CheckPortForward(_ context.Context, id string) error {
	_, err := b.a.criSandboxNetNS(id)
	return err
}

// portForwardDialTimeout bounds a port forward's connection to the sandbox.
const portForwardDialTimeout = 10 * time.Second

// DialPort implements criserver.Backend: it connects to 127.0.0.1:port in
// the sandbox's network namespace, from a thread that enters it for the dial
// only (runtime.DialInNetns: the thread goes back to agentd's namespace, or
// dies with its goroutine if it cannot), or from the host's network
// namespace for a host-network sandbox. The namespace is the one agentd
// pinned under run-dir, never a path a container gives.
func (b criBackend) DialPort(ctx context.Context, id string, port int32) (net.Conn, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("%w: port %d out of range", criserver.ErrInvalidArgument, port)
	}
	netns, err := b.a.criSandboxNetNS(id)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, portForwardDialTimeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	var c net.Conn
	if netns == "" {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp4", addr)
	} else {
		c, err = agentruntime.DialInNetns(ctx, netns, "tcp4", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: connect to %s: %w", id, addr, err)
	}
	return c, nil
}
