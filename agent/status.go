package agent

import (
	"sync"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/state"
)

// statusManager keeps what the agent learns of each container, by monitor ID:
// its journal (from the runtime's events), the results of its probes, and why
// the agent could not start it. Everything goes in through its methods
// (kubelet's status manager and SetContainerReadiness); pod statuses are built
// from its snapshots by the pure functions of package state.
//
// It is safe for concurrent use. Its lock is a leaf: no method calls out while
// holding it, so it may be called with Agent.mu held.
type statusManager struct {
	mu         sync.Mutex                  // guards containers
	containers map[string]*containerStatus // by monitor ID
}

type containerStatus struct {
	journal                 *protocol.Journal
	waiting, waitingMessage string
	imageID                 string
	// The probe results of one run, kubelet's results keyed by container ID:
	// a restart starts without results, and the spec decides what that means
	// (state.Readiness).
	run                        string // runKey of the run the results are about
	startupPassed, readyPassed bool
}

func newStatusManager() *statusManager {
	return &statusManager{containers: map[string]*containerStatus{}}
}

// get returns a container's entry, made if missing. Callers hold mu.
func (s *statusManager) get(id string) *containerStatus {
	c := s.containers[id]
	if c == nil {
		c = &containerStatus{}
		s.containers[id] = c
	}
	return c
}

// SetJournal records a container's journal. A new run forgets the probe
// results of the one before.
func (s *statusManager) SetJournal(id string, j *protocol.Journal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.get(id)
	c.journal = j
	if k := currentRun(j); k != c.run {
		c.run, c.startupPassed, c.readyPassed = k, false, false
	}
}

// currentRun names the journal's current run, "" when there is none.
func currentRun(j *protocol.Journal) string {
	if j == nil {
		return ""
	}
	if cur := j.Current(); cur != nil {
		return runKey(cur)
	}
	return ""
}

// Journal is a container's last recorded journal, or nil.
func (s *statusManager) Journal(id string) *protocol.Journal {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.containers[id]; c != nil {
		return c.journal
	}
	return nil
}

// SetWaiting records why the agent could not start a container.
func (s *statusManager) SetWaiting(id, reason, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.get(id)
	c.waiting, c.waitingMessage = reason, message
}

// Waiting is the reason recorded by SetWaiting, or "".
func (s *statusManager) Waiting(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.containers[id]; c != nil {
		return c.waiting
	}
	return ""
}

// SetCreated records that a container's monitor was started with an image:
// nothing keeps it waiting any more.
func (s *statusManager) SetCreated(id, imageID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.get(id)
	c.waiting, c.waitingMessage, c.imageID = "", "", imageID
}

// SetImageID records the image of an adopted container's monitor.
func (s *statusManager) SetImageID(id, imageID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(id).imageID = imageID
}

// ResetProbeResults forgets the probe results of the current run: its probes
// start afresh.
func (s *statusManager) ResetProbeResults(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.get(id)
	c.startupPassed, c.readyPassed = false, false
}

// SetContainerReadiness records the readiness probe's result for the current run.
func (s *statusManager) SetContainerReadiness(id string, ready bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(id).readyPassed = ready
}

// SetContainerStartup records the startup probe's result for the current run.
func (s *statusManager) SetContainerStartup(id string, started bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.get(id).startupPassed = started
}

// Info is a snapshot of a container's status for state.PodStatus.
func (s *statusManager) Info(id string) *state.ContainerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.containers[id]
	if c == nil {
		return &state.ContainerInfo{}
	}
	return &state.ContainerInfo{Journal: c.journal, Waiting: c.waiting, WaitingMessage: c.waitingMessage,
		StartupPassed: c.startupPassed, ReadinessPassed: c.readyPassed, ImageID: c.imageID}
}

// Remove forgets a container.
func (s *statusManager) Remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.containers, id)
}
