package supervisor

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// updateTimeout bounds an update helper's work: loading the run's state and
// writing a few cgroup files.
const updateTimeout = 30 * time.Second

// update serves OpUpdate. While a run goes, an `agent-monitor update` helper
// (libcontainer is not in this image) sets the new limits on its cgroup and
// writes them into the config; between runs (BackOff) only the config
// changes, here, and the next run starts with it. This image's own copy of
// the config is not changed: it uses none of the limits, and every later image
// reads the config again. An exec to the next image waits for an update being
// served (quiesce), so that image sees the new config.
func (s *supervisor) update(upd *protocol.Resources) *protocol.Response {
	if upd == nil {
		return errResponse(protocol.ErrCodeInvalid, "update needs resources")
	}
	if err := upd.Check(); err != nil {
		return errResponse(protocol.ErrCodeInvalid, err.Error())
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	s.mu.Lock()
	state := s.journal.State
	var id string
	if run := s.journal.Current(); run != nil && state == protocol.StateRunning {
		id = run.ContainerID
	}
	s.mu.Unlock()
	switch state {
	case protocol.StateRunning:
		resp := s.updateRun(id, upd)
		if resp.Error == nil || resp.Error.Code != protocol.ErrCodeNotRunning {
			return resp
		}
		// The run ended meanwhile: if another follows, it gets the update.
		s.mu.Lock()
		state = s.journal.State
		s.mu.Unlock()
		if state != protocol.StateBackOff {
			return resp
		}
		return s.updateConfig(upd)
	case protocol.StateBackOff:
		return s.updateConfig(upd)
	}
	return errResponse(protocol.ErrCodeNotRunning, "container is not running and will not run again")
}

// updateConfig applies upd to the config alone.
func (s *supervisor) updateConfig(upd *protocol.Resources) *protocol.Response {
	cfg, err := protocol.ReadConfig(s.h.StateDir)
	if err != nil {
		return errResponse(protocol.ErrCodeInternal, "read config: "+err.Error())
	}
	cfg.Cgroup = upd.Apply(cfg.Cgroup)
	if err := protocol.WriteConfig(s.h.StateDir, cfg); err != nil {
		return errResponse(protocol.ErrCodeInternal, "write config: "+err.Error())
	}
	return &protocol.Response{Cgroup: &cfg.Cgroup}
}

// updateRun has the update helper apply upd to run id and answers what it
// answered. The helper is our child, reaped by reap's Wait4(-1) like an exec
// helper: its answer comes on a pipe, never from its exit status.
func (s *supervisor) updateRun(id string, upd *protocol.Resources) *protocol.Response {
	args, err := protocol.UpdateArgs(s.h.StateDir, id, upd)
	if err != nil {
		return errResponse(protocol.ErrCodeInvalid, err.Error())
	}
	r, w, err := os.Pipe()
	if err != nil {
		return errResponse(protocol.ErrCodeInternal, "update helper: "+err.Error())
	}
	defer r.Close()
	cmd := exec.Command(s.h.Fat, args...)
	cmd.Stdout = w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return errResponse(protocol.ErrCodeInternal, "start update helper: "+err.Error())
	}
	_ = r.SetReadDeadline(time.Now().Add(updateTimeout))
	var resp protocol.Response
	if err := protocol.ReadMessage(bufio.NewReaderSize(r, 1024), &resp, protocol.MaxRequestLine); err != nil {
		return errResponse(protocol.ErrCodeInternal, fmt.Sprintf("update helper pid %d gave no answer: %v", cmd.Process.Pid, err))
	}
	return &resp
}
