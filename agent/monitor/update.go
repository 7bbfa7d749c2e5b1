package monitor

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// updateHelper is `agent-monitor update`, started by the lean monitor for an
// OpUpdate while run containerID is going: it sets the config's limits with
// upd applied on the run's cgroup through libcontainer (Container.Set, as
// `runc update` does) and, once the kernel took them, writes them into the
// config, so later runs and a later agentd keep them. It answers the lean
// monitor with one protocol.Response on stdout; the exit code says nothing
// more.
func updateHelper(stateDir, containerID, spec string) error {
	resp := update(stateDir, containerID, spec)
	return protocol.WriteMessage(os.Stdout, resp)
}

func update(stateDir, containerID, spec string) *protocol.Response {
	fail := func(code string, err error) *protocol.Response {
		return &protocol.Response{Error: &protocol.Error{Code: code, Message: err.Error()}}
	}
	var upd protocol.Resources
	if err := json.Unmarshal([]byte(spec), &upd); err != nil {
		return fail(protocol.ErrCodeInvalid, fmt.Errorf("update request: %w", err))
	}
	if err := upd.Check(); err != nil {
		return fail(protocol.ErrCodeInvalid, err)
	}
	cfg, err := protocol.ReadConfig(stateDir)
	if err != nil {
		return fail(protocol.ErrCodeInternal, err)
	}
	if !isContainerID(containerID) {
		return fail(protocol.ErrCodeInvalid, fmt.Errorf("run %q is not a container ID", containerID))
	}
	next := *cfg
	next.Cgroup = upd.Apply(cfg.Cgroup)
	c, err := libcontainer.Load(cfg.StateRoot, containerID)
	if err != nil {
		if errors.Is(err, libcontainer.ErrNotExist) {
			return fail(protocol.ErrCodeNotRunning, fmt.Errorf("run %s is gone", containerID))
		}
		return fail(protocol.ErrCodeInternal, fmt.Errorf("load run %s: %w", containerID, err))
	}
	// state.json lies under run-dir: its cgroup is written to only when it is
	// the one this config makes.
	if err := checkLoaded(c, cfg); err != nil {
		return fail(protocol.ErrCodeInternal, err)
	}
	lc := c.Config()
	setResources(lc.Cgroups.Resources, &next.Cgroup)
	if err := c.Set(lc); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fail(protocol.ErrCodeNotRunning, err)
		}
		// The kernel's refusal (EBUSY for a memory limit below the usage,
		// EINVAL for a CPU it does not have); libcontainer put the old limits back.
		return fail(protocol.ErrCodeInvalid, fmt.Errorf("set cgroup limits: %w", err))
	}
	if err := protocol.WriteConfig(stateDir, &next); err != nil {
		return fail(protocol.ErrCodeInternal, fmt.Errorf("the running container has the new limits, but its config could not be written: %w", err))
	}
	return &protocol.Response{Cgroup: &next.Cgroup}
}

// setResources puts c's limits into libcontainer's resources the way
// BuildSpec's resources and specconv make them at a run's start, so that an
// updated run and a new one get the same cgroup values.
func setResources(r *cgroups.Resources, c *protocol.Cgroup) {
	if c.MemoryLimit > 0 {
		// No swap beyond the limit, as at the start.
		r.Memory, r.MemorySwap = c.MemoryLimit, c.MemoryLimit
	}
	if c.CPUShares > 0 {
		r.CpuShares = c.CPUShares
		r.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(c.CPUShares) // cgroup v2 takes a weight
	}
	if c.CPUQuota > 0 {
		r.CpuQuota, r.CpuPeriod = c.CPUQuota, c.CPUPeriod
		if r.CpuPeriod == 0 {
			r.CpuPeriod = 100000
		}
	}
	r.CpusetCpus, r.CpusetMems = c.CpusetCpus, c.CpusetMems
}
