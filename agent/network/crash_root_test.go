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

// These tests kill a process running Setup, Teardown or Collect at a crash
// point, as kill -9 would kill agentd, and check that a Network over the same
// state converges: the pod gets attached once, and torn down pods leave no
// reservation, veth, cache entry or nat rule behind. They use the same
// bridges, subnets and cleanup as network_root_test.go.

// helperEnv makes the test binary a helper process that runs one job on a
// Network (see TestMain); crashDuring arms a crash point in it.
const helperEnv = "AGENTD_NETWORK_TEST_HELPER"

// helperJob is what the helper process does: Op "setup", "teardown" or
// "collect" (which keeps the pods in Keep).
type helperJob struct {
	Bridge, Subnet, StateDir string
	IPMasq, PluginMasq       bool
	Op, UID, NetNS           string
	Keep                     []string
	Ports                    []PortMapping // setup's host ports
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
	n, err := New(Config{Bridge: job.Bridge, Subnet: job.Subnet, StateDir: job.StateDir, IPMasq: job.IPMasq, legacyPluginMasq: job.PluginMasq})
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch job.Op {
	case "setup":
		_, err = n.SetupWithPorts(ctx, job.UID, job.NetNS, job.Ports)
	case "teardown":
		err = n.Teardown(ctx, job.UID, job.NetNS)
	case "collect":
		_, err = n.Collect(ctx, func(uid string) bool {
			for _, k := range job.Keep {
				if k == uid {
					return true
				}
			}
			return false
		})
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
	job.PluginMasq = n.cfg.legacyPluginMasq
	spec, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(spec), crashpoint.Env+"="+point)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Sys().(syscall.WaitStatus).Signaled() || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL ||
		!strings.Contains(string(out), "crashpoint: killing ") || !strings.Contains(string(out), " at "+strings.Split(point, "@")[0]) {
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
	// What the tests wait for is the kernel destroying network namespaces, which it does from a workqueue: after
	// a suite that made hundreds of pods (the e2e package runs before this one) its backlog took over 30 s on a
	// busy 2-CPU machine.
	deadline := time.Now().Add(2 * time.Minute)
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

// Collect finds every attachment the state knows of, whatever part of it a
// crash left, and tears down those of pods it is not told to keep; a Collect
// killed half-way is finished by the next.
func TestCollect(t *testing.T) {
	testutil.RequiresRoot(t)
	requireIPTables(t)
	ctx := context.Background()
	n, br, _, stateDir := newTestNetwork(t, "g", "10.199.0.0/16", 24, true)
	removeEmptyNatTable(t)

	type testPod struct{ uid, ns, ip string }
	pods := map[string]*testPod{}
	for _, name := range []string{"keep", "attached", "nsgone", "crashed", "deleting", "rulesonly"} {
		uid, ns := pod(t, n, "gc-"+name)
		removeMasqRules(t, uid)
		pods[name] = &testPod{uid: uid, ns: ns}
	}
	setup := func(p *testPod) {
		ip, err := n.Setup(ctx, p.uid, p.ns)
		if err != nil {
			t.Fatal(err)
		}
		p.ip = ip
	}
	// keep, attached: attached, namespace pinned.
	setup(pods["keep"])
	setup(pods["attached"])
	// nsgone: attached, namespace gone.
	setup(pods["nsgone"])
	unpinNetNS(t, pods["nsgone"].ns)
	// crashed: agentd killed during the ADD, namespace gone: a reservation
	// and rules, no cache entry.
	crashDuring(t, n, "network-plugin-added", helperJob{Op: "setup", UID: pods["crashed"].uid, NetNS: pods["crashed"].ns})
	unpinNetNS(t, pods["crashed"].ns)
	// deleting: agentd killed during the DEL of a pod whose namespace is
	// gone: a cache entry and rules, no reservation.
	setup(pods["deleting"])
	unpinNetNS(t, pods["deleting"].ns)
	crashDuring(t, n, "network-plugin-deleted", helperJob{Op: "teardown", UID: pods["deleting"].uid, NetNS: pods["deleting"].ns})
	// rulesonly: as deleting, and the cache entry went too: only the rules.
	setup(pods["rulesonly"])
	unpinNetNS(t, pods["rulesonly"].ns)
	crashDuring(t, n, "network-plugin-deleted", helperJob{Op: "teardown", UID: pods["rulesonly"].uid, NetNS: pods["rulesonly"].ns})
	if err := os.Remove(filepath.Join(cacheDir(stateDir), "results", networkName+"-"+pods["rulesonly"].uid+"-"+ifName)); err != nil {
		t.Fatal(err)
	}
	if src, chain := masqRulesOf(t, pods["rulesonly"].uid); len(src) != 1 || !chain || len(reservationsOf(t, stateDir, pods["rulesonly"].uid)) != 0 {
		t.Fatalf("rulesonly: POSTROUTING rules for %v, chain %v, reserved %v; want only the rules", src, chain, reservationsOf(t, stateDir, pods["rulesonly"].uid))
	}

	keep := func(uid string) bool { return uid == pods["keep"].uid }
	want := []string{pods["attached"].uid, pods["crashed"].uid, pods["deleting"].uid, pods["nsgone"].uid, pods["rulesonly"].uid}
	sort.Strings(want)

	// A Collect killed after its second pod; the next one does the rest.
	crashDuring(t, n, "network-collected@2", helperJob{Op: "collect", Keep: []string{pods["keep"].uid}})
	for _, uid := range want[:2] {
		assertGone(t, stateDir, uid)
	}
	collected, err := n.Collect(ctx, keep)
	if err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if !reflect.DeepEqual(collected, want[2:]) {
		t.Errorf("Collect after a crashed one collected %v, want %v", collected, want[2:])
	}
	for name, p := range pods {
		if name != "keep" {
			assertGone(t, stateDir, p.uid)
		}
	}
	if hasEth0(t, pods["attached"].ns) {
		t.Error("the collected pod whose namespace is pinned still has eth0")
	}
	waitFor(t, "one veth on the bridge, the kept pod's", func() bool { return len(bridgePorts(t, br)) == 1 })

	// The kept pod is untouched and reachable.
	k := pods["keep"]
	assertAttachedOnce(t, stateDir, k.uid, k.ns, k.ip, true)
	if ip, err := n.Setup(ctx, k.uid, k.ns); err != nil || ip != k.ip {
		t.Errorf("Setup of the kept pod = %s, %v; want its address %s", ip, err, k.ip)
	}
	exchange(t, "", listenIn(t, k.ns, k.ip))

	// Idempotent: nothing more to collect.
	if collected, err := n.Collect(ctx, keep); err != nil || len(collected) != 0 {
		t.Errorf("second Collect = %v, %v; want nothing", collected, err)
	}
	// Keeping nothing collects the last one, attached or not.
	if collected, err := n.Collect(ctx, func(string) bool { return false }); err != nil || !reflect.DeepEqual(collected, []string{k.uid}) {
		t.Errorf("Collect keeping nothing = %v, %v; want %s", collected, err, k.uid)
	}
	assertGone(t, stateDir, k.uid)
	if hasEth0(t, k.ns) {
		t.Error("collected pod still has eth0")
	}
}
