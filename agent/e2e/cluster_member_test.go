package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestE2EClusterMemberProcess: cluster mode's etcd member runs in agent-etcd, a child of agentd. Killed, it is
// reported and started again, and the cluster answers; agentd stopping takes it along, and so does agentd dying.
func TestE2EClusterMemberProcess(t *testing.T) {
	n := newClusterNode(t, "node-1", nil)
	n.start()
	n.initCluster()
	ready := map[string]string{"node-1": "Ready"}
	n.waitNodes(ready, 20*time.Second)

	first := n.memberPid()
	killed := time.Now()
	if err := unix.Kill(first, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	n.eventually(30*time.Second, "a new agent-etcd", func() (bool, string) {
		pids := n.memberPids()
		return len(pids) == 1 && pids[0] != first, fmt.Sprint(pids)
	})
	n.waitNodes(ready, 30*time.Second)
	t.Logf("agent-etcd %d killed; %d serves the node %v later", first, n.memberPid(), time.Since(killed).Round(time.Millisecond))
	if log := n.stderr.String(); !strings.Contains(log, "This node's etcd member stopped by itself") || !strings.Contains(log, "signal: killed") {
		t.Errorf("agentd did not report the death of its agent-etcd:\n%s", log)
	}

	// agentd killed: its member stops by itself (its standard input ends).
	member := n.memberPid()
	n.stop(unix.SIGKILL, 10*time.Second)
	killed = time.Now()
	n.eventually(60*time.Second, "agent-etcd stopped after agentd was killed", func() (bool, string) {
		return !n.isMember(member), ""
	})
	t.Logf("agentd killed; its agent-etcd %d stopped %v later", member, time.Since(killed).Round(time.Millisecond))

	// Started again, agentd resumes its membership with a new member; stopped, it stops that member first.
	n.start()
	n.waitNodes(ready, 30*time.Second)
	member = n.memberPid()
	n.stop(unix.SIGTERM, 60*time.Second)
	if n.isMember(member) {
		t.Errorf("agent-etcd (pid %d) outlived agentd's stop", member)
	}
}

// memberPids are the running agent-etcd processes of n's agentd binaries whose parent is n's agentd.
func (n *clusterNode) memberPids() []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !n.isMember(pid) {
			continue
		}
		if n.running() && parentPid(pid) == n.cmd.Process.Pid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// memberPid is the one agent-etcd of n's agentd.
func (n *clusterNode) memberPid() int {
	n.t.Helper()
	pids := n.memberPids()
	if len(pids) != 1 {
		n.t.Fatalf("want one agent-etcd child of agentd %d, found %v", n.cmd.Process.Pid, pids)
	}
	return pids[0]
}

// isMember says whether pid runs this test's agent-etcd (a zombie does not: it has no executable).
func (n *clusterNode) isMember(pid int) bool {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return err == nil && exe == filepath.Join(n.bin, "agent-etcd")
}

func parentPid(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
