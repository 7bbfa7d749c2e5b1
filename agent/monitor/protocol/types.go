// Package protocol is the contract between agentd and its per-container monitors,
// imported by agentd's runtime and by both images of the monitor (agent-monitor and
// agent-monitor-lean) and by nothing heavier than the standard library and x/sys:
//   - the container configuration agentd hands a monitor (ContainerConfig) and the
//     journal of starts and exits a monitor keeps (Journal), in the state directory
//     whose layout and codecs are in statedir.go;
//   - how agentd starts a monitor and how the monitor's images hand over to each
//     other (launch.go: command lines, the sync message, the handoff);
//   - the control socket: handshake, operations, responses, exec frames (protocol.go,
//     stream.go) and its version;
//   - the restart policy and the journal's transitions (policy.go), one rule for
//     both monitor images and for agentd's lost monitors.
//
// Monitors outlive agentd and are adopted by newer agentd versions; after an upgrade
// an old lean monitor execs the new agent-monitor. So everything here changes only
// compatibly: fields are added, never renamed or given a new meaning. The golden
// files in testdata/golden pin every message and file byte for byte, and
// testdata/v1.0 holds what the previous version wrote.
package protocol

import "time"

// Name identifies the monitor protocol in the handshake.
const Name = "agentd-monitor"

// Major is bumped on an incompatible change; agentd adopts monitors of its
// own and the previous major version. Minor is bumped when a capability is added.
const (
	Major = 1
	Minor = 2 // 1.1: OpAttach, Process.Stdin/StdinOnce/Tty, Sysctls; 1.2: OpUpdate, Cgroup.CpusetCpus/CpusetMems
)

// Restart policies, as in a Pod's spec.restartPolicy.
const (
	RestartAlways    = "Always"
	RestartOnFailure = "OnFailure"
	RestartNever     = "Never"
)

// Exit reasons, as kubelet reports them in containerStatuses[].state.terminated.reason.
const (
	ReasonCompleted   = "Completed"
	ReasonError       = "Error"
	ReasonOOMKilled   = "OOMKilled"
	ReasonStartError  = "StartError"  // the process could not be started (no such executable, …)
	ReasonMonitorLost = "MonitorLost" // the monitor died; its container was killed by whoever found it
)

// ContainerConfig is everything a monitor needs to create, run, restart and stop one
// container of a pod. agentd builds it; the monitor never reads the Pod.
type ContainerConfig struct {
	// ID names the monitor and its state directory; stable for the life of the
	// container slot (all restarts). Each run gets its own ContainerID.
	ID   string `json:"id"`
	Name string `json:"name"` // the container's name in the pod
	Pod  PodRef `json:"pod"`

	Image   ImageRef `json:"image"`
	Rootfs  Rootfs   `json:"rootfs"`
	Process Process  `json:"process"`

	Hostname    string      `json:"hostname,omitempty"`
	Namespaces  Namespaces  `json:"namespaces"`
	Mounts      []Mount     `json:"mounts,omitempty"`
	Privileged  bool        `json:"privileged,omitempty"`
	Seccomp     string      `json:"seccomp,omitempty"` // "RuntimeDefault" or "Unconfined"; "" (older agentd) is unconfined
	Cgroup      Cgroup      `json:"cgroup"`
	Log         LogConfig   `json:"log"`
	Restart     Restart     `json:"restart"`
	Stop        StopConfig  `json:"stop"`
	Termination Termination `json:"termination,omitempty"`
	// Sysctls are set in the container's namespaces (the OCI spec's
	// linux.sysctl, which libcontainer writes under /proc/sys at its start).
	// Only namespaced ones are allowed, and never those of a namespace the
	// container shares with the host (CheckSysctls); agentd checks them against
	// kubelet's rules before, the monitor again before it builds the spec.
	Sysctls map[string]string `json:"sysctls,omitempty"`

	// StateRoot is libcontainer's state root (under run-dir).
	StateRoot string `json:"stateRoot"`
}

// PodRef identifies the pod a container belongs to.
type PodRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid"`
}

// ImageRef says which image a container runs.
type ImageRef struct {
	Name string `json:"name"` // as the manifest wrote it
	ID   string `json:"id"`   // config digest
}

// Rootfs is built from image layers and a fresh writable layer per run.
type Rootfs struct {
	Layers   []string `json:"layers"`             // unpacked layer dirs, bottom first
	Driver   string   `json:"driver"`             // "overlay" or "vfs"
	ReadOnly bool     `json:"readOnly,omitempty"` // readOnlyRootFilesystem
	// RunsDir is where the monitor keeps each run's directory (its rootfs, upper
	// layer and pinned subPaths): RunsDir/<Run.ContainerID>/. agentd puts it on disk
	// under its root, so that what a container writes never lands in run-dir (a
	// tmpfs: host memory). It must be absolute and clean; the monitor refuses
	// anything else. Empty in configs written before it existed: then the state
	// directory's RunsDir (see RunsRoot).
	RunsDir string `json:"runsDir,omitempty"`
}

// Process is the container's main process.
type Process struct {
	Args           []string `json:"args"`
	Env            []string `json:"env,omitempty"`
	Cwd            string   `json:"cwd"`
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGIDs []uint32 `json:"additionalGids,omitempty"`
	// User, when set, is a user spec as an image's USER is written ("name",
	// "uid", "name:group", "uid:gid"): the monitor resolves it against the
	// container's own /etc/passwd and /etc/group, inside its rootfs, at every start.
	// It then replaces UID and GID, and the user's groups join AdditionalGIDs.
	User            string   `json:"user,omitempty"`
	Capabilities    []string `json:"capabilities,omitempty"` // CAP_ names: bounding, effective, permitted
	NoNewPrivileges bool     `json:"noNewPrivileges,omitempty"`
	// OOMScoreAdj is the oom_score_adj agentd wants for the container's processes
	// (kubelet's by QoS class); nil leaves them the monitor's. The monitor applies
	// it as far as the kernel lets it: a value below its own needs CAP_SYS_RESOURCE.
	OOMScoreAdj *int `json:"oomScoreAdj,omitempty"`
	// Stdin gives the process a stdin pipe whose write end the monitor keeps for
	// the run's life, written to by attached clients (OpAttach); without it the
	// process's stdin is /dev/null. StdinOnce closes it when the first client
	// that attached its stdin detaches (kubelet's stdinOnce). Tty gives the
	// process a terminal (its stdin, stdout and stderr) whose master the
	// monitor keeps: its output is logged as stdout, attached clients may
	// resize it. Each run gets a new pipe or terminal.
	Stdin     bool `json:"stdin,omitempty"`
	StdinOnce bool `json:"stdinOnce,omitempty"`
	Tty       bool `json:"tty,omitempty"`
}

// Namespaces says which namespaces a container shares. A path joins a pinned
// namespace (the pod's); "host" shares the host's; "" makes a private one.
type Namespaces struct {
	Net string `json:"net,omitempty"`
	IPC string `json:"ipc,omitempty"`
	UTS string `json:"uts,omitempty"`
	PID string `json:"pid,omitempty"` // "" (private) or "host"
}

// NamespaceHost marks a namespace shared with the host.
const NamespaceHost = "host"

// Mount is a bind or filesystem mount into the container.
type Mount struct {
	Source      string `json:"source"`
	Destination string `json:"destination"`
	// SubPath, with a bind mount, is a relative path below Source (a volume's
	// directory, which the container may write to). The monitor resolves it at every
	// start beneath Source, without leaving it whatever symlinks the container
	// planted, creates it as a directory when missing, and mounts what it resolved.
	SubPath string   `json:"subPath,omitempty"`
	Type    string   `json:"type,omitempty"` // "bind" (default), "tmpfs", …
	Options []string `json:"options,omitempty"`
}

// Cgroup places the container and its monitor.
type Cgroup struct {
	Path        string `json:"path"`                  // absolute, e.g. /agent/pod-<uid>/<container>
	MonitorPath string `json:"monitorPath"`           // absolute, the monitor's own cgroup
	MemoryLimit int64  `json:"memoryLimit,omitempty"` // bytes, 0 = none
	CPUShares   uint64 `json:"cpuShares,omitempty"`   // from requests.cpu, kubelet's formula
	CPUQuota    int64  `json:"cpuQuota,omitempty"`    // µs per CPUPeriod, from limits.cpu
	CPUPeriod   uint64 `json:"cpuPeriod,omitempty"`
	PidsLimit   int64  `json:"pidsLimit,omitempty"`
	// CpusetCpus and CpusetMems (1.2) pin the container to CPUs and memory
	// nodes, in the kernel's list format ("0-3,6"); "" leaves the parent's.
	CpusetCpus string `json:"cpusetCpus,omitempty"`
	CpusetMems string `json:"cpusetMems,omitempty"`
}

// LogConfig says where the monitor writes the container's CRI log files:
// <Dir>/<restartCount>.log (kubelet's layout), or File when it is set, rotated by
// size (LogPath).
type LogConfig struct {
	Dir string `json:"dir"`
	// Root is agentd's log-dir, which Dir lies beneath. A pod may be able to write
	// beneath Root (a hostPath volume), so everything below it is opened without
	// following symlinks (crilog). Empty in configs written before it existed: then
	// Dir's grandparent (<log-dir>/<pod dir>/<container>).
	Root string `json:"root,omitempty"`
	// File, when set, is the log file of every run as a CRI client names it (its
	// sandbox's LogDirectory and the container's LogPath): a clean relative path
	// beneath Root, which must be set with it (CheckFile). Empty (kubelet's layout
	// under Dir) in configs made for manifests and in those written before it
	// existed.
	File     string `json:"file,omitempty"`
	MaxSize  int64  `json:"maxSize,omitempty"`
	MaxFiles int    `json:"maxFiles,omitempty"`
}

// Restart is the restart policy the monitor applies, with kubelet's back-off.
type Restart struct {
	Policy      string        `json:"policy"`
	BackoffBase time.Duration `json:"backoffBase,omitempty"` // default 10 s
	BackoffMax  time.Duration `json:"backoffMax,omitempty"`  // default 5 min
	ResetAfter  time.Duration `json:"resetAfter,omitempty"`  // default 10 min of running
}

// StopConfig says how to stop the container.
type StopConfig struct {
	Signal      int           `json:"signal,omitempty"` // default SIGTERM
	GracePeriod time.Duration `json:"gracePeriod"`
}

// Termination is where the container may leave a message for its status.
type Termination struct {
	MessagePath   string `json:"messagePath,omitempty"` // in the container
	FallbackToLog bool   `json:"fallbackToLog,omitempty"`
	// HostPath is the regular file on the host that agentd created and that is
	// bind-mounted at MessagePath. The monitor empties it before every run and reads
	// only this file, never a path in the container's rootfs. Without it (a config
	// written by an older agentd) no message is read from the container.
	HostPath string `json:"hostPath,omitempty"`
}

// MonitorOOMScoreAdj is the oom_score_adj a monitor gives itself: below every
// container's (Guaranteed ones get -997), since the OOM killer taking a monitor
// costs its container too, and a monitor is a few MB. containerd's shims get the
// same (containerd's -999, plus one). Going below the score inherited from agentd
// needs CAP_SYS_RESOURCE; without it the monitor keeps agentd's.
const MonitorOOMScoreAdj = -998

// Backoff defaults, kubelet's.
const (
	DefaultBackoffBase = 10 * time.Second
	DefaultBackoffMax  = 5 * time.Minute
	DefaultResetAfter  = 10 * time.Minute
)

// Container states a monitor reports.
const (
	StateCreating = "Creating" // setting up the first run
	StateRunning  = "Running"
	StateBackOff  = "BackOff" // exited, waiting to restart
	StateExited   = "Exited"  // exited, will not restart (policy or stop)
)

// Run is one start of the container.
type Run struct {
	ContainerID  string    `json:"containerID"`
	Pid          int       `json:"pid,omitempty"`
	PidStartTime uint64    `json:"pidStartTime,omitempty"` // /proc/<pid>/stat field 22
	RestartCount int       `json:"restartCount"`
	StartedAt    time.Time `json:"startedAt"`
	LogPath      string    `json:"logPath"`
	User         *RunUser  `json:"user,omitempty"` // as resolved for this run (Process.User)
	Exit         *Exit     `json:"exit,omitempty"`
}

// RunUser is the identity a run's processes (and its execs) have.
type RunUser struct {
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGIDs []uint32 `json:"additionalGids,omitempty"`
}

// Exit is how a run ended.
type Exit struct {
	ExitCode   int       `json:"exitCode"` // 128+signal when killed by a signal
	Signal     int       `json:"signal,omitempty"`
	Reason     string    `json:"reason"`
	Message    string    `json:"message,omitempty"`
	FinishedAt time.Time `json:"finishedAt"`
}

// Journal is a monitor's record of every start and exit, written atomically to
// JournalFile so an agent that was away can replay what happened.
type Journal struct {
	ID           string    `json:"id"`
	MonitorPid   int       `json:"monitorPid"`
	MonitorStart uint64    `json:"monitorStartTime"` // /proc/<pid>/stat field 22
	State        string    `json:"state"`
	Stopped      bool      `json:"stopped,omitempty"` // stopped on request: no more restarts
	RestartCount int       `json:"restartCount"`
	BackoffStep  int       `json:"backoffStep,omitempty"` // restarts since the back-off was last reset
	NextStart    time.Time `json:"nextStart,omitempty"`   // in BackOff: when the next run starts
	Runs         []Run     `json:"runs"`                  // the most recent MaxJournalRuns runs, oldest first
	DroppedLog   int64     `json:"droppedLogBytes,omitempty"`
	// Speaks is the control protocol of the monitor image that wrote the
	// journal, stamped by WriteJournal. A restore trusts it, with the lock and
	// the pid, instead of saying Hello to each monitor (agentd's runtime.List);
	// journals of monitors older than the stamp lack it.
	Speaks *Speaks `json:"speaks,omitempty"`
}

// Speaks names a control protocol version, as Hello and HelloReply do.
type Speaks struct {
	Protocol string `json:"protocol"`
	Major    int    `json:"major"`
	Minor    int    `json:"minor"`
}

// Compatible reports whether an agentd of this version can drive a monitor that
// speaks s; false for a nil s (a journal without the stamp).
func (s *Speaks) Compatible() bool {
	return s != nil && s.Protocol == Name && Compatible(s.Major)
}

// MaxJournalRuns bounds the journal; older runs are dropped (their count stays in RestartCount).
const MaxJournalRuns = 20

// Current returns the latest run, or nil.
func (j *Journal) Current() *Run {
	if len(j.Runs) == 0 {
		return nil
	}
	return &j.Runs[len(j.Runs)-1]
}

// LastExit returns the latest run's exit, or nil while it runs.
func (j *Journal) LastExit() *Exit {
	if r := j.Current(); r != nil {
		return r.Exit
	}
	return nil
}
