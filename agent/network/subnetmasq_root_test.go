package network

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// These tests use agentd's own masquerading (SetupMasquerade) on bridges and
// subnets of their own, as the other root tests do; "outside" is a network
// namespace of the test's, joined to the host by a veth pair in a 10.197.x.y/30
// subnet, standing for a host beyond the node.

// newMasqNetwork makes a Network that masquerades with agentd's rules (or
// with the bridge plugin's per-pod chains, legacy) on br and subnet over
// stateDir, and registers the removal of agentd's rules for br.
func newMasqNetwork(t *testing.T, br string, subnet netip.Prefix, stateDir string, on, legacy bool) *Network {
	t.Helper()
	n, err := New(Config{Bridge: br, Subnet: subnet.String(), StateDir: stateDir, IPMasq: on, legacyPluginMasq: legacy})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeSubnetMasq(t, br) })
	return n
}

// removeSubnetMasq removes agentd's masquerading for br after a test that
// failed to, and says so.
func removeSubnetMasq(t *testing.T, br string) {
	t.Helper()
	m := subnetMasq{chain: subnetMasqChain(networkName, br)} // plan(off) needs the chain alone
	out, err := iptablesOutput(context.Background(), "-t", "nat", "-S")
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, op := range m.plan(m.parse(out), false) {
		if err := iptables(context.Background(), append([]string{"-t", "nat"}, op...)...); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// subnetMasqOf reads the nat table's masquerading of n.
func subnetMasqOf(t *testing.T, n *Network) (subnetMasq, subnetMasqState) {
	t.Helper()
	m := newSubnetMasq(n.cfg.Bridge, n.subnet)
	out, err := iptablesOutput(context.Background(), "-t", "nat", "-S")
	if err != nil {
		t.Fatal(err)
	}
	return m, m.parse(out)
}

// outsideHost makes a namespace joined to the host by a veth pair (host end
// hostIf) and returns its path, the host end's address and its own.
func outsideHost(t *testing.T, hostIf string, salt int) (nsPath, hostIP, peerIP string) {
	t.Helper()
	p := testSubnet(t, "10.197.0.0/16", 30, salt)
	host, peer := p.Addr().Next(), p.Addr().Next().Next()
	nsPath = newNetNS(t)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("ip", "link", "add", hostIf, "type", "veth", "peer", "name", "out0", "netns", nsPath)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostIf).Run() })
	run("ip", "addr", "add", fmt.Sprintf("%s/30", host), "dev", hostIf)
	run("ip", "link", "set", hostIf, "up")
	run("nsenter", "--net="+nsPath, "ip", "addr", "add", fmt.Sprintf("%s/30", peer), "dev", "out0")
	run("nsenter", "--net="+nsPath, "ip", "link", "set", "out0", "up")
	run("nsenter", "--net="+nsPath, "ip", "link", "set", "lo", "up")
	// No route back to the pod subnet: only a masqueraded connection is answered.
	return nsPath, host.String(), peer.String()
}

// allowForward lets the test's traffic through a FORWARD chain that drops by
// policy (Docker sets one), until the test ends.
func allowForward(t *testing.T, br string) {
	t.Helper()
	out, err := iptablesOutput(context.Background(), "-t", "filter", "-S", "FORWARD")
	if err != nil || !strings.Contains(out, "-P FORWARD DROP") {
		return
	}
	for _, spec := range [][]string{{"-i", br, "-j", "ACCEPT"}, {"-o", br, "-j", "ACCEPT"}} {
		if err := iptables(context.Background(), append([]string{"-t", "filter", "-I", "FORWARD", "1"}, spec...)...); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = iptables(context.Background(), append([]string{"-t", "filter", "-D", "FORWARD"}, spec...)...)
		})
	}
}

// countXtables puts wrappers for iptables and its relatives first in PATH, for
// agentd and the plugins it runs, and returns a function that lists the
// commands they ran since.
func countXtables(t *testing.T) func() []string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	for _, c := range []string{"iptables", "ip6tables", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore", "iptables-legacy", "iptables-nft"} {
		real, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		script := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >>%s\nexec %s \"$@\"\n", c, log, real)
		if err := os.WriteFile(filepath.Join(dir, c), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return func() []string {
		data, _ := os.ReadFile(log)
		_ = os.Remove(log)
		if len(data) == 0 {
			return nil
		}
		return strings.Split(strings.TrimSpace(string(data)), "\n")
	}
}

func TestSubnetMasquerade(t *testing.T) {
	testutil.RequiresRoot(t)
	requireIPTables(t)
	ctx := context.Background()
	br := testBridge(t, "x")
	subnet := testSubnet(t, "10.199.0.0/16", 24, 'x')
	removeEmptyNatTable(t)
	n := newMasqNetwork(t, br, subnet, t.TempDir(), true, false)
	if err := n.SetupMasquerade(ctx); err != nil {
		t.Fatal(err)
	}
	if m, st := subnetMasqOf(t, n); !m.masquerading(st) {
		t.Fatalf("SetupMasquerade installed %+v", st)
	}
	allowForward(t, br)
	outNS, hostIP, peerIP := outsideHost(t, fmt.Sprintf("agt%dxo", os.Getpid()%1000), 'x')

	ran := countXtables(t)
	uidA, nsA := pod(t, n, "masq-a")
	uidB, nsB := pod(t, n, "masq-b")
	ipA, err := n.Setup(ctx, uidA, nsA)
	if err != nil {
		t.Fatal(err)
	}
	ipB, err := n.Setup(ctx, uidB, nsB)
	if err != nil {
		t.Fatal(err)
	}
	if cmds := ran(); len(cmds) > 0 {
		t.Errorf("two pods' Setup ran iptables:\n%s", strings.Join(cmds, "\n"))
	}
	for _, uid := range []string{uidA, uidB} {
		if masqChainExists(ctx, networkName, uid) {
			t.Errorf("the bridge plugin made a chain for pod %s", uid)
		}
	}
	ran()

	// Out of the subnet: masqueraded to the host's address on the way out.
	if peer, _ := exchange(t, nsA, listenIn(t, outNS, peerIP)); peer != hostIP {
		t.Errorf("outside host saw pod %s's connection from %s, want the node's %s (masqueraded)", ipA, peer, hostIP)
	}
	// Pod to pod: not masqueraded, and neither is the pod reaching the gateway.
	if peer, _ := exchange(t, nsA, listenIn(t, nsB, ipB)); peer != ipA {
		t.Errorf("pod b saw pod a (%s) as %s: pod-to-pod traffic was masqueraded", ipA, peer)
	}
	gw, err := net.Listen("tcp4", net.JoinHostPort(n.Gateway(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if peer, _ := exchange(t, nsB, gw); peer != ipB {
		t.Errorf("the node saw pod b (%s) as %s", ipB, peer)
	}

	ran()
	for _, p := range []struct{ uid, ns string }{{uidA, nsA}, {uidB, nsB}} {
		if err := n.Teardown(ctx, p.uid, p.ns); err != nil {
			t.Fatal(err)
		}
	}
	if cmds := ran(); len(cmds) > 0 {
		t.Errorf("two pods' Teardown ran iptables:\n%s", strings.Join(cmds, "\n"))
	}
	// The subnet's rules stay: they are the network's, not the pods'.
	if m, st := subnetMasqOf(t, n); !m.masquerading(st) {
		t.Errorf("Teardown changed the subnet's masquerading: %+v", st)
	}
}

func TestSubnetMasqueradeIdempotentAndReplaced(t *testing.T) {
	testutil.RequiresRoot(t)
	requireIPTables(t)
	ctx := context.Background()
	br := testBridge(t, "y")
	subnet := testSubnet(t, "10.199.0.0/16", 24, 'y')
	stateDir := t.TempDir()
	removeEmptyNatTable(t)
	n := newMasqNetwork(t, br, subnet, stateDir, true, false)
	if err := n.SetupMasquerade(ctx); err != nil {
		t.Fatal(err)
	}
	// Again, in this agentd and in a restarted one: one listing, no change.
	ran := countXtables(t)
	if err := n.SetupMasquerade(ctx); err != nil {
		t.Fatal(err)
	}
	if err := newMasqNetwork(t, br, subnet, stateDir, true, false).SetupMasquerade(ctx); err != nil {
		t.Fatal(err)
	}
	if cmds := ran(); len(cmds) != 2 || !strings.Contains(cmds[0], " -S") || !strings.Contains(cmds[1], " -S") {
		t.Errorf("SetupMasquerade of what is there ran:\n%s", strings.Join(cmds, "\n"))
	}

	// Another subnet on the bridge replaces the rules.
	other := testSubnet(t, "10.199.0.0/16", 24, 'y'+17)
	if other == subnet {
		t.Fatalf("no second subnet: %s", other)
	}
	n2 := newMasqNetwork(t, br, other, stateDir, true, false)
	if err := n2.SetupMasquerade(ctx); err != nil {
		t.Fatal(err)
	}
	m2, st2 := subnetMasqOf(t, n2)
	if !m2.masquerading(st2) || len(st2.jumps) != 1 || len(st2.rules) != 3 {
		t.Errorf("after the subnet changed to %s: %+v", other, st2)
	}
	out, _ := iptablesOutput(ctx, "-t", "nat", "-S")
	if strings.Contains(out, subnet.String()) {
		t.Errorf("rules for the old subnet %s are left:\n%s", subnet, out)
	}

	// Masquerading off removes them, and a second time finds nothing to do.
	off := newMasqNetwork(t, br, other, stateDir, false, false)
	for i := 0; i < 2; i++ {
		if err := off.SetupMasquerade(ctx); err != nil {
			t.Fatal(err)
		}
		if _, st := subnetMasqOf(t, off); st.chainExists || st.jumps != nil || st.rules != nil {
			t.Errorf("IPMasq off, call %d: left %+v", i+1, st)
		}
	}
}

// An agentd from before SetupMasquerade attached a pod with the bridge
// plugin's per-pod chain; the new agentd (live restore) tears it down with its
// configuration, which masquerades no pod: the chain and its rule still go.
func TestTeardownOfPodWithPluginMasq(t *testing.T) {
	testutil.RequiresRoot(t)
	requireIPTables(t)
	ctx := context.Background()
	br := testBridge(t, "z")
	subnet := testSubnet(t, "10.199.0.0/16", 24, 'z')
	stateDir := t.TempDir()
	removeEmptyNatTable(t)
	old := newMasqNetwork(t, br, subnet, stateDir, true, true)
	for _, nsGone := range []bool{false, true} {
		uid, ns := pod(t, old, fmt.Sprintf("upgrade-%v", nsGone))
		removeMasqRules(t, uid)
		ip, err := old.Setup(ctx, uid, ns)
		if err != nil {
			t.Fatal(err)
		}
		if src, chain := masqRulesOf(t, uid); !slices.Equal(src, []string{ip}) || !chain {
			t.Fatalf("the old configuration made rules for %v, chain %v; want the plugin's for %s", src, chain, ip)
		}
		n := newMasqNetwork(t, br, subnet, stateDir, true, false)
		if err := n.SetupMasquerade(ctx); err != nil {
			t.Fatal(err)
		}
		if nsGone {
			unpinNetNS(t, ns)
		}
		if err := n.Teardown(ctx, uid, ns); err != nil {
			t.Fatal(err)
		}
		if src, chain := masqRulesOf(t, uid); len(src) > 0 || chain {
			t.Errorf("namespace gone %v: the old pod's rules for %v, chain %v, left after Teardown", nsGone, src, chain)
		}
		if reserved(stateDir, ip) {
			t.Errorf("namespace gone %v: %s still reserved", nsGone, ip)
		}
		if m, st := subnetMasqOf(t, n); !m.masquerading(st) {
			t.Errorf("the subnet's masquerading changed: %+v", st)
		}
	}
}

// TestSetupTeardownTime logs how long a pod's Setup and Teardown take with
// the bridge plugin's per-pod masquerading and with agentd's subnet-wide one
// (issue 17). It fails on nothing but errors: the machine's load decides.
func TestSetupTeardownTime(t *testing.T) {
	testutil.RequiresRoot(t)
	requireIPTables(t)
	ctx := context.Background()
	br := testBridge(t, "t")
	subnet := testSubnet(t, "10.199.0.0/16", 24, 't')
	removeEmptyNatTable(t)
	const rounds = 15
	for _, legacy := range []bool{true, false} {
		n := newMasqNetwork(t, br, subnet, t.TempDir(), true, legacy)
		if err := n.SetupMasquerade(ctx); err != nil {
			t.Fatal(err)
		}
		var setup, teardown []time.Duration
		for i := 0; i < rounds; i++ {
			uid, ns := pod(t, n, fmt.Sprintf("time-%v-%d", legacy, i))
			removeMasqRules(t, uid)
			start := time.Now()
			if _, err := n.Setup(ctx, uid, ns); err != nil {
				t.Fatal(err)
			}
			mid := time.Now()
			if err := n.Teardown(ctx, uid, ns); err != nil {
				t.Fatal(err)
			}
			setup, teardown = append(setup, mid.Sub(start)), append(teardown, time.Since(mid))
		}
		name := map[bool]string{true: "bridge plugin ipMasq (before)", false: "agentd's subnet rule (after)"}[legacy]
		t.Logf("%-30s Setup median %v min %v, Teardown median %v min %v (%d rounds)", name,
			median(setup), slices.Min(setup), median(teardown), slices.Min(teardown), rounds)
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
