package main

import (
	"context"
	"time"
)

// driver starts and stops containers under one kind of monitor: ours
// (agent-monitor, through agent/runtime) or Debian's conmon with runc.
type driver interface {
	Name() string
	// Prepare readies a container: everything that is not part of the timed start
	// (config, bundle, rootfs mount, log directory). It returns the container.
	Prepare(name string, args []string) (*container, error)
	// Start starts a prepared container and returns once the runtime says it was
	// started (agent: runtime.Start returned; conmon: `runc start` returned).
	Start(ctx context.Context, c *container) error
	// Exited reports whether the container has exited and its monitor recorded it
	// (agent: journal state Exited; conmon: its exit file in --exit-dir).
	Exited(c *container) bool
	// Stop kills the container and removes everything it had: monitor, cgroups,
	// mounts, state and log.
	Stop(ctx context.Context, c *container) error
	// Close removes what is left of the driver (every container it prepared, its
	// cgroup parent, its directories). It is safe to call after a failure.
	Close() error
}

// container is one container of a driver.
type container struct {
	Name    string
	ID      string
	Args    []string
	LogDir  string // exists after Prepare; the log file appears in it
	LogPath string
	// MonitorPids are the monitor's processes (agent: the agent-monitor-lean
	// process; conmon: the daemonized conmon).
	MonitorPids []int
	Pid         int // the container's init
	StartedAt   time.Time

	priv any // driver's own state
}
