package reconcile

import (
	"time"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// RecordState is what a starting agent found of a pod's record (pod.json in the
// pod's sandbox directory).
type RecordState int

const (
	// NoRecord: monitors, volumes or a cgroup of the pod, but no sandbox.
	NoRecord RecordState = iota
	// RecordUnfinished: a sandbox without pod.json, which is written last: its
	// set-up was interrupted.
	RecordUnfinished
	// RecordBroken: pod.json cannot be read.
	RecordBroken
	// RecordTerminating: the pod was being removed.
	RecordTerminating
	// RecordComplete: a pod that ran.
	RecordComplete
)

// RestorePod decides whether a starting agent adopts a pod an earlier agent left
// or removes it (containerd's shouldCleanupShim): only a complete record, not
// being removed, is adopted, and only with live restore in effect. The reason
// says why a pod is removed.
func RestorePod(rec RecordState, liveRestore bool) (adopt bool, reason string) {
	switch rec {
	case NoRecord:
		return false, "no pod record"
	case RecordUnfinished:
		return false, "its sandbox set-up was interrupted"
	case RecordBroken:
		return false, "its pod record is broken"
	case RecordTerminating:
		return false, "it was being removed"
	}
	if !liveRestore {
		return false, "live restore is off"
	}
	return true, ""
}

// MonitorFound is what a starting agent found of one container's monitor.
type MonitorFound int

const (
	// MonitorRuns: alive and verified, or finished (its container will not run again).
	MonitorRuns MonitorFound = iota
	// MonitorStarting: alive, still creating its container.
	MonitorStarting
	// MonitorDead: gone while its container should run, or its state unreadable.
	MonitorDead
	// MonitorUnmanaged: alive, speaking a protocol this agent cannot manage.
	MonitorUnmanaged
)

// ContainerRestore is what restore does with a container of an adopted pod.
type ContainerRestore string

const (
	// Adopt: take the monitor over; its journal is the container's state.
	Adopt ContainerRestore = "Adopt"
	// AdoptStarting: take it over and read its journal until the container runs;
	// its probes start then.
	AdoptStarting ContainerRestore = "AdoptStarting"
	// CleanUpLost: kill what the dead monitor left (runtime Cleanup), then
	// protocol.RestartAfterLoss decides whether the container starts again.
	CleanUpLost ContainerRestore = "CleanUpLost"
	// LeaveUnmanaged: shown, never touched, never duplicated.
	LeaveUnmanaged ContainerRestore = "LeaveUnmanaged"
)

// RestoreContainer decides what restore does with the monitor of a container
// whose pod it adopts; j is its journal (nil when it has none yet).
func RestoreContainer(m MonitorFound, j *protocol.Journal) ContainerRestore {
	switch m {
	case MonitorDead:
		return CleanUpLost
	case MonitorUnmanaged:
		return LeaveUnmanaged
	case MonitorStarting:
		return AdoptStarting
	}
	if j != nil && j.State == protocol.StateCreating {
		return AdoptStarting // read before its first run began
	}
	return Adopt
}

// CreateRetryDelay is how long a container the agent could not create (its
// image missing, a configuration error) waits before it is tried again.
const CreateRetryDelay = 10 * time.Second

// CreateRetryAt is when a container whose creation failed at now is tried again.
func CreateRetryAt(now time.Time) time.Time { return now.Add(CreateRetryDelay) }
