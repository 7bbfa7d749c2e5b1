package protocol

import (
	"encoding/json"
	"strconv"
)

// How agentd starts a monitor, and how the monitor's two images hand over to each
// other. agentd runs `agent-monitor` (StartArgs) with the sync pipe's write end on
// SyncFd and the state dir's lock (see Lock) on LockFd; the monitor detaches,
// starts the container's first run and writes one SyncMessage on the pipe. From
// then on the process alternates between agent-monitor (setup, with libcontainer)
// and agent-monitor-lean (LeanBinary, the long-lived supervisor), each exec'ing the
// other with a Handoff in its environment. After an upgrade replaced the binaries,
// a running lean monitor of the old version execs the new agent-monitor (NextArgs,
// ExecArgs, Handoff): these are as stable as the files and the socket.

// Monitor subcommands.
const (
	CmdStart = "start" // agentd: detach and start the first run
	CmdNext  = "next"  // the lean monitor, by exec: clean up the ended run, start the next when due
	CmdExec  = "exec"  // the lean monitor, as a helper: run a process in the container over ExecConnFd
	CmdKill  = "kill"  // agentd: clean up after a dead monitor (ExitMonitorAlive if it lives)
	// CmdUpdate (1.2): the lean monitor, as a helper: set a running container's
	// cgroup limits (OpUpdate) and write them into its config; it answers one
	// Response on its stdout.
	CmdUpdate = "update"
)

// Descriptors agent-monitor is handed.
const (
	SyncFd     = 3 // start: the sync pipe's write end
	LockFd     = 4 // start: the state dir's lock, held for the monitor's life
	ExecConnFd = 3 // exec: the client's control connection, after a successful OpExec request
)

// ExitMonitorAlive is agent-monitor kill's exit code when it refused to clean up
// because the container's monitor is alive.
const ExitMonitorAlive = 3

// LeanBinary is the lean monitor's file name; it sits beside agent-monitor.
const LeanBinary = "agent-monitor-lean"

// StartArgs are agent-monitor's arguments to start a container's monitor.
func StartArgs(stateDir string) []string {
	return []string{CmdStart, "--state-dir", stateDir, "--lock-fd", strconv.Itoa(LockFd)}
}

// NextArgs are agent-monitor's arguments when the lean monitor execs it after a
// run ended or a back-off expired.
func NextArgs(stateDir string) []string {
	return []string{CmdNext, "--state-dir", stateDir}
}

// ExecArgs are the arguments of the exec helper for one exec request.
func ExecArgs(stateDir, containerID string, req *ExecRequest) ([]string, error) {
	spec, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	return []string{CmdExec, "--state-dir", stateDir, "--container-id", containerID, "--spec", string(spec)}, nil
}

// UpdateArgs are the arguments of the update helper for one update request
// of run containerID.
func UpdateArgs(stateDir, containerID string, upd *Resources) ([]string, error) {
	spec, err := json.Marshal(upd)
	if err != nil {
		return nil, err
	}
	return []string{CmdUpdate, "--state-dir", stateDir, "--container-id", containerID, "--spec", string(spec)}, nil
}

// KillArgs are agent-monitor's arguments to clean up after a dead monitor.
func KillArgs(stateDir string) []string {
	return []string{CmdKill, "--state-dir", stateDir}
}

// SyncMessage is what the monitor writes on the sync pipe (one line of JSON) once
// the container's first run started (Pid, ContainerID) or failed (Error).
type SyncMessage struct {
	Pid         int    `json:"pid,omitempty"`
	ContainerID string `json:"containerID,omitempty"`
	MonitorPid  int    `json:"monitorPid"`
	Error       string `json:"error,omitempty"`
}

// HandoffEnv carries a Handoff, as JSON, across the execve from one image of a
// monitor process to the next. The pid, the container (its child) and the listed
// fds survive the exec.
const HandoffEnv = "AGENT_MONITOR_HANDOFF"

// Handoff is what one image of the monitor tells the next.
type Handoff struct {
	StateDir string `json:"stateDir"`
	Listener int    `json:"listener"`         // control socket, listening
	Stdout   int    `json:"stdout,omitempty"` // the current run's output pipes (read ends), 0 if none
	Stderr   int    `json:"stderr,omitempty"`
	Lock     int    `json:"lock,omitempty"` // the state dir's LockFile, locked for the monitor's life; 0 if none
	// The current run's stdin pipe (write end) when Process.Stdin, and its
	// terminal's master when Process.Tty (then Stdout and Stderr are 0); 0 if none.
	Stdin   int    `json:"stdin,omitempty"`
	Console int    `json:"console,omitempty"`
	Fat     string `json:"fat"`  // agent-monitor
	Lean    string `json:"lean"` // agent-monitor-lean
}

// Fds lists the descriptors a handoff carries.
func (h *Handoff) Fds() []int {
	return []int{h.Listener, h.Stdout, h.Stderr, h.Lock, h.Stdin, h.Console}
}
