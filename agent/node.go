package agent

import (
	"bufio"
	"bytes"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// nodeMemory is the node's memory in bytes, MemTotal of /proc/meminfo (what kubelet
// takes as the node's memory capacity for Burstable containers' OOM scores); 0
// when it cannot be read.
func nodeMemory() int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	return parseMemTotal(data)
}

// nodeMilliCPU is the node's CPUs in thousandths, kubelet's cpu capacity.
func nodeMilliCPU() int64 { return int64(goruntime.NumCPU()) * 1000 }

// nodeEphemeralStorage is the size in bytes of the filesystem holding root,
// kubelet's ephemeral-storage capacity; 0 when it cannot be read.
func nodeEphemeralStorage(root string) int64 {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * st.Bsize
}

func parseMemTotal(meminfo []byte) int64 {
	s := bufio.NewScanner(bytes.NewReader(meminfo))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) == 3 && f[0] == "MemTotal:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err == nil {
				return kb << 10
			}
		}
	}
	return 0
}

// ownOOMScoreAdj is agentd's oom_score_adj and whether it may lower OOM scores below
// it (CAP_SYS_RESOURCE in its effective set), which its monitors inherit.
func ownOOMScoreAdj() (adj int, canLower bool) {
	data, err := os.ReadFile("/proc/self/oom_score_adj")
	if err == nil {
		adj, _ = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var caps [2]unix.CapUserData
	if unix.Capget(&hdr, &caps[0]) == nil {
		canLower = caps[unix.CAP_SYS_RESOURCE/32].Effective&(1<<(unix.CAP_SYS_RESOURCE%32)) != 0
	}
	return adj, canLower
}

// oomScoresCapped says whether monitors (and Guaranteed containers) will keep a
// higher oom_score_adj than they ask for: agentd cannot lower scores and its own is
// above the monitors'.
func oomScoresCapped(own int, canLower bool) bool {
	return !canLower && own > protocol.MonitorOOMScoreAdj
}
