package monitor

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/containerd/console"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/monitor/supervisor"
)

// execConnFd is the client connection the lean monitor hands the exec helper.
const execConnFd = protocol.ExecConnFd

// execHelper runs one process in a running container and streams its I/O over the
// client's connection as monitor protocol frames, ending with FrameExit. It lives as long as the
// process.
func execHelper(stateDir, containerID, specJSON string) error {
	// The lean monitor checked the client already; whoever else starts this helper
	// with a connection gets the same answer.
	uid, err := supervisor.PeerUIDFd(execConnFd)
	if err == nil && !supervisor.PeerAllowed(uid) {
		err = fmt.Errorf("client uid %d is not root", uid)
	}
	if err != nil {
		unix.Close(execConnFd)
		return fmt.Errorf("exec: refused the connection on fd %d: %w", execConnFd, err)
	}
	conn := os.NewFile(execConnFd, "conn")
	defer conn.Close()
	fail := func(err error) error {
		_ = protocol.WriteMessage(conn, &protocol.Response{Error: &protocol.Error{Code: protocol.ErrCodeInternal, Message: err.Error()}})
		return err
	}
	var req protocol.ExecRequest
	if err := json.Unmarshal([]byte(specJSON), &req); err != nil {
		return fail(fmt.Errorf("exec spec: %w", err))
	}
	cfg, err := protocol.ReadConfig(stateDir)
	if err != nil {
		return fail(err)
	}
	c, err := libcontainer.Load(cfg.StateRoot, containerID)
	if err != nil {
		return fail(fmt.Errorf("container %s: %w", containerID, err))
	}
	env := req.Env
	if len(env) == 0 {
		env = cfg.Process.Env
	}
	env = processEnv(env, req.Tty)
	cwd := req.Cwd
	if cwd == "" {
		cwd = cfg.Process.Cwd
	}
	if cwd == "" {
		cwd = "/"
	}
	nnp := cfg.Process.NoNewPrivileges
	u := runUser(stateDir, containerID, &cfg.Process)
	p := &libcontainer.Process{
		Args: req.Args, Env: env, Cwd: cwd,
		UID: int(u.UID), GID: int(u.GID), AdditionalGroups: toInts(u.AdditionalGIDs),
		NoNewPrivileges: &nnp,
	}

	var out sync.Mutex // one frame at a time on conn
	send := func(typ byte, b []byte) {
		out.Lock()
		_ = protocol.WriteFrame(conn, typ, b)
		out.Unlock()
	}
	var copies sync.WaitGroup
	// The success response goes first: a process that writes at once must not
	// have its output framed before it (the client would read a frame as the
	// response).
	answered := make(chan struct{})
	pump := func(typ byte, r io.Reader) {
		defer copies.Done()
		<-answered
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				send(typ, buf[:n])
			}
			if err != nil {
				return
			}
		}
	}

	var stdin io.WriteCloser
	var pty console.Console
	if req.Tty {
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return fail(err)
		}
		defer parent.Close()
		p.ConsoleSocket = child
		p.ConsoleWidth, p.ConsoleHeight = req.Width, req.Height
		if err := c.Run(p); err != nil {
			child.Close()
			return fail(startError(err))
		}
		child.Close()
		master, err := utils.RecvFile(parent)
		if err != nil {
			return fail(fmt.Errorf("receive pty: %w", err))
		}
		pty, err = console.ConsoleFromFile(master)
		if err != nil {
			return fail(err)
		}
		defer pty.Close()
		if req.Width > 0 && req.Height > 0 {
			_ = pty.Resize(console.WinSize{Width: req.Width, Height: req.Height})
		}
		stdin = pty
		copies.Add(1)
		go pump(protocol.FrameStdout, pty)
	} else {
		outR, outW, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		p.Stdout, p.Stderr = outW, errW
		var inW *os.File
		if req.Stdin {
			var inR *os.File
			if inR, inW, err = os.Pipe(); err != nil {
				return fail(err)
			}
			p.Stdin = inR
			defer inR.Close()
		}
		err = c.Run(p)
		outW.Close()
		errW.Close()
		if err != nil {
			return fail(startError(err))
		}
		if inW != nil {
			stdin = inW
		}
		copies.Add(2)
		go pump(protocol.FrameStdout, outR)
		go pump(protocol.FrameStderr, errR)
	}

	// The request succeeded: say so, then stream.
	out.Lock()
	_ = protocol.WriteMessage(conn, &protocol.Response{})
	out.Unlock()
	close(answered)
	pid, _ := p.Pid()
	var reapMu sync.Mutex // guards reaped
	reaped := false
	gone := make(chan struct{}) // closed when the client is
	go func() {
		defer close(gone)
		buf := make([]byte, 32<<10)
		for {
			typ, payload, err := protocol.ReadFrame(conn, buf)
			if err != nil {
				// The client is gone before the process ended: agentd's Exec gave
				// up (a CRI ExecSync or an exec probe timed out, agentctl was
				// interrupted). Nobody waits for the result any more, so the
				// process is killed, as containerd and CRI-O kill an ExecSync's
				// process at its timeout. A client that only closed stdin sent
				// FrameCloseStdin and is still reading: that is not this.
				reapMu.Lock()
				if !reaped {
					killExec(p, pid)
				}
				reapMu.Unlock()
				if stdin != nil && !req.Tty {
					stdin.Close()
				}
				return
			}
			switch typ {
			case protocol.FrameStdin:
				if stdin != nil {
					_, _ = stdin.Write(payload)
				}
			case protocol.FrameCloseStdin:
				if stdin != nil && !req.Tty {
					stdin.Close()
				} else if pty != nil {
					_, _ = pty.Write([]byte{4}) // ^D
				}
			case protocol.FrameResize:
				if w, h, ok := protocol.ParseResizePayload(payload); ok && pty != nil {
					_ = pty.Resize(console.WinSize{Width: w, Height: h})
				}
			}
		}
	}()

	state, waitErr := p.Wait()
	reapMu.Lock()
	reaped = true
	reapMu.Unlock()
	code := 0
	switch {
	case state != nil:
		if ws, ok := state.Sys().(unix.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		} else {
			code = state.ExitCode()
		}
	case waitErr != nil:
		code = 255
	}
	// A pty's reader ends with EIO once every writer is gone, a pipe's with EOF;
	// a child left running in the background may hold them open for longer, but
	// not beyond the client's patience: with the client gone, there is no one to
	// send the rest to.
	copied := make(chan struct{})
	go func() { copies.Wait(); close(copied) }()
	select {
	case <-copied:
	case <-gone:
		return nil
	}
	send(protocol.FrameExit, protocol.ExitPayload(code))
	if waitErr != nil && state == nil {
		return waitErr
	}
	return nil
}

// killExec kills an exec's process and its process group. libcontainer makes
// every process it starts in a container the leader of a new session (nsexec's
// setsid), so the group is the process and whatever it started and did not move
// to a group of its own (a non-interactive shell's children). It is called
// before Wait has returned: the group is the exec's (a pid is not reused while a
// group has it as its id), unless in the instant between the kernel's reap and
// Wait's return the group emptied and the whole pid space was cycled through.
func killExec(p *libcontainer.Process, pid int) {
	if pid > 0 {
		_ = unix.Kill(-pid, unix.SIGKILL)
	}
	_ = p.Signal(unix.SIGKILL) // through a pidfd: the process even if it leads no group
}

// runUser is the identity the run's main process got (resolved at its start), which
// an exec in it gets too; the container's /etc/passwd, which it may have changed
// since, is not read again.
func runUser(stateDir, containerID string, p *protocol.Process) *protocol.RunUser {
	if j, err := protocol.ReadJournal(stateDir); err == nil {
		for _, r := range j.Runs {
			if r.ContainerID == containerID && r.User != nil {
				return r.User
			}
		}
	}
	return &protocol.RunUser{UID: p.UID, GID: p.GID, AdditionalGIDs: p.AdditionalGIDs}
}
