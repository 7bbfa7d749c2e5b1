package runtime

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// Interface is what the agent asks of a container runtime: pod sandboxes, one
// monitor per container, and the events of their journals. The agent holds no
// path of the runtime's and reads none of its files; a fake (package
// runtimetest) stands in for it in the agent's tests.
//
// Every method is safe for concurrent use. Methods on one container (by its
// monitor ID) or one pod (by UID) must be serialised by the caller, as the
// agent's pod workers do. Methods that take a context give up when it is done;
// the others are short.
type Interface interface {
	// Settings are the settings containers are configured with (ContainerConfig).
	Settings() *Settings

	// EnsureSandbox creates (or finds) a pod's namespaces, /etc files and volumes.
	EnsureSandbox(pod *corev1.Pod) (*Sandbox, error)
	// RemoveSandbox removes what EnsureSandbox made and the pod's cgroup; it is
	// idempotent and logs what it cannot remove.
	RemoveSandbox(uid string)
	// UpdateQOSCgroups sets the QoS tiers' cgroups for every pod the node runs
	// or is about to run.
	UpdateQOSCgroups(pods []*corev1.Pod) error
	// SandboxNetNS is where a pod's network namespace is (or was) pinned.
	SandboxNetNS(uid string) string
	// PodsWithState lists the UIDs of pods that left anything on the host;
	// Sandboxes those that have a sandbox directory.
	PodsWithState() []string
	Sandboxes() ([]string, error)
	// SandboxDir is a pod's sandbox directory (Sandbox.Dir), where the agent
	// keeps its record of the pod.
	SandboxDir(uid string) string
	// CheckSandbox proves that a sandbox read back from the agent's record of
	// pod names only what EnsureSandbox makes for it (ErrForeignRecord).
	CheckSandbox(pod *corev1.Pod, sb *Sandbox) error

	// Start writes a container's config and starts its monitor; see Runtime.Start.
	Start(ctx context.Context, cfg *protocol.ContainerConfig) (*Started, error)
	// Stop stops a container for good within grace; Kill stops its current run
	// and leaves the restart policy to its monitor.
	Stop(ctx context.Context, id string, grace time.Duration) (*protocol.Journal, error)
	Kill(ctx context.Context, id string, grace time.Duration) (*protocol.Journal, error)
	// Exec runs a process in a running container and returns its exit code.
	Exec(ctx context.Context, id string, req *protocol.ExecRequest, eio ExecIO) (int, error)
	// Attach attaches aio to a running container's stdio until its run ends or
	// ctx is done; see Runtime.Attach.
	Attach(ctx context.Context, id string, aio AttachIO) error
	// ReopenLog has a container's monitor reopen its log file by name, after
	// whoever rotates it (a CRI client's ReopenContainerLog) renamed it away.
	ReopenLog(ctx context.Context, id string) error
	// Update changes a container's cgroup limits, on its running container
	// and in its monitor's config; see Runtime.Update.
	Update(ctx context.Context, id string, upd *protocol.Resources) (*protocol.Cgroup, error)
	// List verifies every monitor found; Inspect one.
	List(ctx context.Context) ([]*Monitor, error)
	Inspect(ctx context.Context, id string) *Monitor
	// IDs lists the monitors that have state, without talking to them;
	// ContainersWithState also the containers that left only runs under root.
	IDs() ([]string, error)
	ContainersWithState() []string
	// Journal reads a monitor's journal.
	Journal(id string) (*protocol.Journal, error)
	// Cleanup kills the container of a dead monitor and records its exit
	// (ErrMonitorAlive while the monitor lives); Remove deletes a finished
	// monitor's state.
	Cleanup(ctx context.Context, id string) (*protocol.Journal, error)
	Remove(id string) error

	// Watch reports every change of a monitor's journal and every monitor that
	// died, until ctx is done; see Runtime.Watch.
	Watch(ctx context.Context) (<-chan Event, error)
}

var _ Interface = (*Runtime)(nil)
