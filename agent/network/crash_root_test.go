package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/crashpoint"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// These tests kill a process running Setup or Teardown at a crash
// point, as kill -9 would kill agentd, and check that a Network over the same
// state converges: the pod gets attached once, and torn down pods leave no
// reservation, veth, cache entry or nat rule behind. They use the same
// bridges, subnets and cleanup as network_root_test.go.

// helperEnv makes the test binary a helper process that runs one job on a
// Network (see TestMain); crashDuring arms a crash point in it.
const helperEnv = "AGENTD_NETWORK_TEST_HELPER"

// helperJob is what the helper process does: Op "setup" or "teardown".
type helperJob struct {
	Bridge, Subnet, StateDir string
	IPMasq                   bool
	Op, UID, NetNS           string
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		if err := runHelperJob(spec); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelperJob(spec string) error {
	var job helperJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		return err
	}
	n, err := New(Config{Bridge: job.Bridge, Subnet: job.Subnet, StateDir: job.StateDir, IPMasq: job.IPMasq})
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch job.Op {
	case "setup":
		_, err = n.Setup(ctx, job.UID, job.NetNS)
	case "teardown":
		err = n.Teardown(ctx, job.UID, job.NetNS)
	default:
		err = fmt.Errorf("unknown op %q", job.Op)
	}
	return err
}

// crashDuring runs job against n's configuration in a helper process armed to
// be killed at point, and fails unless it was.
func crashDuring(t *testing.T, n *Network, point string, job helperJob) {
	t.Helper()
	job.Bridge, job.Subnet, job.StateDir, job.IPMasq = n.cfg.Bridge, n.cfg.Subnet, n.cfg.StateDir, n.cfg.IPMasq
	spec, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(spec), crashpoint.Env+"="+point)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL ||
		!strings.Contains(string(out), "crashpoint: killing agentd at "+strings.Split(point, "@")[0]) {
		t.Fatalf("%s of %s: want a kill at crash point %s, got %v:\n%s", job.Op, job.UID, point, err, out)
	}
}

// cacheEntryExists says whether libcni has an entry for the pod.
func cacheEntryExists(t *testing.T, stateDir, uid string) bool {
	t.Helper()
	_, err := os.Stat(filepath.Join(cacheDir(stateDir), "results", networkName+"-"+uid+"-"+ifName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// reservationsOf lists the addresses host-local holds for the pod.
func reservationsOf(t *testing.T, stateDir, uid string) []string {
	t.Helper()
	res, bad, err := readReservations(stateDir)
	if err != nil || len(bad) > 0 {
		t.Fatalf("read reservations: %v %v", err, bad)
	}
	var ips []string
	for _, r := range res {
		if r.ContainerID == uid {
			ips = append(ips, r.IP.String())
		}
	}
	return ips
}

// masqRulesOf lists the sources of the POSTROUTING rules that name the pod,
// and says whether its chain exists.
func masqRulesOf(t *testing.T, uid string) (sources []string, chain bool) {
	t.Helper()
	rules, err := natRulesOf(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if r.pod == uid && r.chain == "POSTROUTING" {
			for i := 0; i+1 < len(r.spec); i++ {
				if r.spec[i] == "-s" {
					sources = append(sources, strings.TrimSuffix(r.spec[i+1], "/32"))
				}
			}
		}
	}
	sort.Strings(sources)
	return sources, masqChainExists(context.Background(), networkName, uid)
}

// waitFor polls cond until it holds; the kernel destroys a namespace (and the
// veth end in it) after its last user is gone, not when its mount goes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertGone checks that nothing of the pod's attachment is left.
func assertGone(t *testing.T, stateDir, uid string) {
	t.Helper()
	if cacheEntryExists(t, stateDir, uid) {
		t.Errorf("pod %s: CNI cache entry left", uid)
	}
	if ips := reservationsOf(t, stateDir, uid); len(ips) > 0 {
		t.Errorf("pod %s: addresses %v still reserved", uid, ips)
	}
	if src, chain := masqRulesOf(t, uid); len(src) > 0 || chain {
		t.Errorf("pod %s: POSTROUTING rules for %v, chain %v left", uid, src, chain)
	}
}

// assertAttachedOnce checks that the pod holds ip and nothing twice: one
// reservation, one masquerading rule (when masq), its eth0.
func assertAttachedOnce(t *testing.T, stateDir, uid, ns, ip string, masq bool) {
	t.Helper()
	if ips := reservationsOf(t, stateDir, uid); !reflect.DeepEqual(ips, []string{ip}) {
		t.Errorf("pod %s: reserved %v, want only %s", uid, ips, ip)
	}
	if !cacheEntryExists(t, stateDir, uid) {
		t.Errorf("pod %s: no CNI cache entry", uid)
	}
	if masq {
		if src, chain := masqRulesOf(t, uid); !reflect.DeepEqual(src, []string{ip}) || !chain {
			t.Errorf("pod %s: POSTROUTING rules for %v (chain %v), want one for %s", uid, src, chain, ip)
		}
	}
	if !hasEth0(t, ns) {
		t.Errorf("pod %s: no eth0", uid)
	}
}

func requireIPTables(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables not installed (hack/install-deps.sh installs it)")
	}
}

// agentd killed while the bridge plugin attached a pod: the plugin finished,
// libcni never cached it. Setup again — in the same namespace, or in a new one
// when the sandbox was made anew — must attach the pod once, where it used to
// fail for good with "duplicate allocation" or "eth0 already exists".
func TestSetupAfterCrashDuringAdd(t *testing.T) {
	testutil.RequiresRoot(t)
	requireIPTables(t)
	ctx := context.Background()
	n, br, _, stateDir := newTestNetwork(t, "c", "10.199.0.0/16", 24, true)
	removeEmptyNatTable(t)

	for _, newNS := range []bool{false, true} {
		t.Run(fmt.Sprintf("new namespace %v", newNS), func(t *testing.T) {
			uid, ns := pod(t, n, fmt.Sprintf("crash-add-%v", newNS))
			removeMasqRules(t, uid)
			crashDuring(t, n, "network-plugin-added", helperJob{Op: "setup", UID: uid, NetNS: ns})

			// The crash's effect: attached, but not cached.
			old := reservationsOf(t, stateDir, uid)
			if cacheEntryExists(t, stateDir, uid) || len(old) != 1 || !hasEth0(t, ns) {
				t.Fatalf("after the crash: cache entry %v, reserved %v, eth0 %v; want no entry, one address, eth0",
					cacheEntryExists(t, stateDir, uid), old, hasEth0(t, ns))
			}
			if src, _ := masqRulesOf(t, uid); len(src) != 1 {
				t.Fatalf("after the crash: POSTROUTING rules for %v, want one", src)
			}
			if newNS {
				unpinNetNS(t, ns)
				ns = newNetNS(t)
				waitFor(t, "the old veth to go with its namespace", func() bool { return len(bridgePorts(t, br)) == 0 })
			}

			ip, err := n.Setup(ctx, uid, ns)
			if err != nil {
				t.Fatalf("Setup after a crash during the CNI ADD: %v", err)
			}
			assertAttachedOnce(t, stateDir, uid, ns, ip, true)
			if ports := bridgePorts(t, br); len(ports) != 1 {
				t.Errorf("bridge ports %v, want one veth", ports)
			}
			exchange(t, "", listenIn(t, ns, ip))

			if err := n.Teardown(ctx, uid, ns); err != nil {
				t.Fatal(err)
			}
			assertGone(t, stateDir, uid)
			if ports := bridgePorts(t, br); len(ports) != 0 {
				t.Errorf("bridge ports after Teardown %v", ports)
			}
		})
	}
}

// Teardown of a pod whose namespace is gone, without a cached result (agentd
// was killed while attaching it) or with one whose address is released
// already (agentd was killed while detaching it), must still remove the
// pod's masquerading rules.
func TestTeardownAfterCrashNamespaceGone(t *testing.T) {
	testutil.RequiresRoot(t)
	requireIPTables(t)
	ctx := context.Background()
	n, br, _, stateDir := newTestNetwork(t, "d", "10.199.0.0/16", 24, true)
	removeEmptyNatTable(t)

	t.Run("crash during add", func(t *testing.T) {
		uid, ns := pod(t, n, "crash-add-nsgone")
		removeMasqRules(t, uid)
		crashDuring(t, n, "network-plugin-added", helperJob{Op: "setup", UID: uid, NetNS: ns})
		unpinNetNS(t, ns)
		if cacheEntryExists(t, stateDir, uid) || len(reservationsOf(t, stateDir, uid)) != 1 {
			t.Fatal("the crash did not leave a reservation without a cache entry")
		}
		if err := n.Teardown(ctx, uid, ns); err != nil {
			t.Fatal(err)
		}
		assertGone(t, stateDir, uid)
	})

	t.Run("crash during delete", func(t *testing.T) {
		uid, ns := pod(t, n, "crash-del-nsgone")
		removeMasqRules(t, uid)
		if _, err := n.Setup(ctx, uid, ns); err != nil {
			t.Fatal(err)
		}
		unpinNetNS(t, ns)
		crashDuring(t, n, "network-plugin-deleted", helperJob{Op: "teardown", UID: uid, NetNS: ns})
		if !cacheEntryExists(t, stateDir, uid) || len(reservationsOf(t, stateDir, uid)) != 0 {
			t.Fatal("the crash did not leave a cache entry of a released address")
		}
		if src, chain := masqRulesOf(t, uid); len(src) != 1 || !chain {
			t.Fatalf("the crash left POSTROUTING rules for %v, chain %v; want one rule and the chain", src, chain)
		}
		if err := n.Teardown(ctx, uid, ns); err != nil {
			t.Fatal(err)
		}
		assertGone(t, stateDir, uid)
	})
	waitFor(t, "the veths to go with their namespaces", func() bool { return len(bridgePorts(t, br)) == 0 })
}
