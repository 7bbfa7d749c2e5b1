package monitor

import (
	"os"
	"strconv"
	"strings"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

const oomScoreAdjFile = "/proc/self/oom_score_adj"

func readOOMScoreAdj() (int, error) {
	data, err := os.ReadFile(oomScoreAdjFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

func writeOOMScoreAdj(v int) error {
	return os.WriteFile(oomScoreAdjFile, []byte(strconv.Itoa(v)), 0)
}

// setOwnOOMScoreAdj gives the monitor protocol.MonitorOOMScoreAdj, best effort: a
// kernel that refuses (no CAP_SYS_RESOURCE) leaves it the score it inherited from
// agentd, which warns about that once at its start.
func setOwnOOMScoreAdj() {
	_ = writeOOMScoreAdj(protocol.MonitorOOMScoreAdj)
}

// effectiveOOMScoreAdj is the oom_score_adj a container gets when agentd wants
// want for it and its monitor has own: want when it is not below own (raising is
// always allowed) or when the kernel lets the monitor go that low; own otherwise,
// the lowest score the container can have. runc's init would fail the start
// rather than keep a score it could not lower, so the monitor decides first.
func effectiveOOMScoreAdj(want, own int, canLower bool) int {
	if want >= own || canLower {
		return want
	}
	return own
}

// containerOOMScoreAdj returns the score to put in the container's spec for want:
// it tries want on the monitor itself (then restores its own score) to learn
// whether the kernel allows it.
func containerOOMScoreAdj(want int) int {
	own, err := readOOMScoreAdj()
	if err != nil {
		return want // runc's init reports it, naming the file
	}
	canLower := false
	if want < own && writeOOMScoreAdj(want) == nil {
		canLower = true
		_ = writeOOMScoreAdj(own) // raising back is always allowed
	}
	return effectiveOOMScoreAdj(want, own, canLower)
}
