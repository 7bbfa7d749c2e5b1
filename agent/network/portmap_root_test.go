package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/go-logr/logr/testr"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// These tests forward host ports in the 18080-18579 range (picked by pid) to
// a TCP echo server in a pod's namespace, reach them from the host, and check
// that teardown leaves no DNAT rule of the pod. They share the bridges,
// subnets and cleanup of network_root_test.go; the shared CNI-HOSTPORT-*
// chains portmap makes stay, as they do under every CNI runtime.

// testHostPort picks a host port for the test, unused on the host.
func testHostPort(t *testing.T, offset int) int32 {
	t.Helper()
	p := int32(18080 + (os.Getpid()+offset*7)%500)
	if err := probeHostPort(PortMapping{HostPort: p, Protocol: "TCP"}); err != nil {
		t.Fatalf("host port %d: %v", p, err)
	}
	return p
}

// echoIn serves, in the namespace, TCP on 0.0.0.0:port: every connection gets
// back "<name>\n".
func echoIn(t *testing.T, nsPath string, port int, name string) {
	t.Helper()
	var l net.Listener
	if err := inNetNS(t, nsPath, func() (err error) {
		l, err = net.Listen("tcp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(port)))
		return err
	}); err != nil {
		t.Fatalf("listen on :%d in %s: %v", port, nsPath, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintln(c, name)
			c.Close()
		}
	}()
}

// dialLine connects to addr from the host and returns the line it is sent.
func dialLine(addr string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(s), err
}

// dnatRulesOf lists the nat table's rules that name the pod (portmap's
// comment) and says whether its CNI-DN chain exists.
func dnatRulesOf(t *testing.T, uid string) (rules []string, chain bool) {
	t.Helper()
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S").Output()
	if err != nil {
		t.Fatal(err)
	}
	c := dnatChain(networkName, uid)
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, c) || strings.Contains(l, uid) && strings.Contains(l, "dnat name") {
			rules = append(rules, l)
		}
		if l == "-N "+c {
			chain = true
		}
	}
	return rules, chain
}

// removeDNATRules removes the pod's portmap rules after the test, should
// teardown have failed to, and reports that it had to.
func removeDNATRules(t *testing.T, uid string) {
	t.Cleanup(func() {
		rules, chain := dnatRulesOf(t, uid)
		if len(rules) == 0 && !chain {
			return
		}
		t.Errorf("cleanup: removing the DNAT rules pod %s left: %v", uid, rules)
		c := dnatChain(networkName, uid)
		for _, r := range rules {
			if strings.HasPrefix(r, "-A CNI-HOSTPORT-DNAT ") {
				_ = exec.Command("sh", "-c", "iptables -w -t nat "+strings.Replace(r, "-A ", "-D ", 1)).Run()
			}
		}
		_ = exec.Command("iptables", "-w", "-t", "nat", "-F", c).Run()
		_ = exec.Command("iptables", "-w", "-t", "nat", "-X", c).Run()
	})
}

// newPortmapNetwork is newTestNetwork with masquerading (as agentd runs it)
// and the cleanup of the filter rule host ports bring.
func newPortmapNetwork(t *testing.T, letter string) (*Network, string) {
	t.Helper()
	requireIPTables(t)
	n, _, _, stateDir := newTestNetwork(t, letter, "10.199.0.0/16", 24, true)
	removeEmptyNatTable(t)
	n.log = testr.New(t)
	t.Cleanup(func() {
		if err := n.RemoveLocalnetGuard(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return n, stateDir
}

func TestHostPortForwardedAndRemoved(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	n, stateDir := newPortmapNetwork(t, "p")

	for _, nsGone := range []bool{false, true} {
		name := fmt.Sprintf("hostport-%v", nsGone)
		uid, ns := pod(t, n, name)
		removeMasqRules(t, uid)
		removeDNATRules(t, uid)
		hp := testHostPort(t, 0)
		echoIn(t, ns, 8080, name)
		ip, err := n.SetupWithPorts(ctx, uid, ns, []PortMapping{{HostPort: hp, ContainerPort: 8080}})
		if err != nil {
			t.Fatal(err)
		}
		// From the host's loopback (route_localnet, SNAT) and at a node address.
		for _, host := range []string{"127.0.0.1", n.Gateway()} {
			addr := net.JoinHostPort(host, strconv.Itoa(int(hp)))
			if got, err := dialLine(addr); err != nil || got != name {
				t.Errorf("%s: got %q, %v; want %q from pod %s (%s)", addr, got, err, name, uid, ip)
			}
		}
		// The pod reaches its own host port at the node's address (hairpin).
		var got string
		if err := inNetNS(t, ns, func() (err error) {
			got, err = dialLine(net.JoinHostPort(n.Gateway(), strconv.Itoa(int(hp))))
			return err
		}); err != nil || got != name {
			t.Errorf("hairpin from the pod to %s:%d: got %q, %v", n.Gateway(), hp, got, err)
		}
		if rules, chain := dnatRulesOf(t, uid); len(rules) == 0 || !chain {
			t.Errorf("pod %s: no DNAT rules (chain %v): %v", uid, chain, rules)
		}
		if out, err := exec.Command("iptables", append([]string{"-w", "-C", "INPUT"}, localnetGuardSpec(n.cfg.Bridge)...)...).CombinedOutput(); err != nil {
			t.Errorf("no localnet guard for %s: %v: %s", n.cfg.Bridge, err, out)
		}
		// Setup again with the same ports is a check: same address.
		if again, err := n.SetupWithPorts(ctx, uid, ns, []PortMapping{{HostPort: hp, ContainerPort: 8080, Protocol: "tcp"}}); err != nil || again != ip {
			t.Errorf("second SetupWithPorts: %s, %v; want %s", again, err, ip)
		}
		if nsGone {
			unpinNetNS(t, ns) // the runtime removed the sandbox first
		}
		if err := n.Teardown(ctx, uid, ns); err != nil {
			t.Fatal(err)
		}
		if rules, chain := dnatRulesOf(t, uid); len(rules) > 0 || chain {
			t.Errorf("namespace gone %v: DNAT rules left after Teardown (chain %v): %v", nsGone, chain, rules)
		}
		assertGone(t, stateDir, uid)
		if _, err := dialLine(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hp)))); err == nil {
			t.Errorf("host port %d still answers after Teardown", hp)
		}
	}
}

func TestHostPortRefused(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	n, stateDir := newPortmapNetwork(t, "q")
	n.cfg.ReservedHostPorts = []uint16{10253}

	a, nsA := pod(t, n, "first")
	removeMasqRules(t, a)
	removeDNATRules(t, a)
	hp := testHostPort(t, 1)
	if _, err := n.SetupWithPorts(ctx, a, nsA, []PortMapping{{HostPort: hp, ContainerPort: 80}}); err != nil {
		t.Fatal(err)
	}

	// A process of the node listens on this one.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := int32(l.Addr().(*net.TCPAddr).Port)

	for _, tc := range []struct {
		name string
		port PortMapping
		want error
	}{
		{"etcd", PortMapping{HostPort: 2379, ContainerPort: 80}, ErrHostPortReserved},
		{"metrics", PortMapping{HostPort: 10253, ContainerPort: 80}, ErrHostPortReserved},
		{"another pod's", PortMapping{HostPort: hp, ContainerPort: 81}, ErrHostPortInUse},
		{"another pod's, one address", PortMapping{HostPort: hp, ContainerPort: 81, HostIP: "127.0.0.1"}, ErrHostPortInUse},
		{"a host process's", PortMapping{HostPort: busy, ContainerPort: 81}, ErrHostPortInUse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uid, ns := pod(t, n, "refused-"+strings.NewReplacer(" ", "-", "'", "", ",", "").Replace(tc.name))
			removeDNATRules(t, uid)
			_, err := n.SetupWithPorts(ctx, uid, ns, []PortMapping{tc.port})
			if !errors.Is(err, tc.want) {
				t.Fatalf("SetupWithPorts(%s): %v, want %v", tc.port, err, tc.want)
			}
			if ips := reservationsOf(t, stateDir, uid); len(ips) > 0 || cacheEntryExists(t, stateDir, uid) || hasEth0(t, ns) {
				t.Errorf("refused pod %s is attached: %v", uid, ips)
			}
		})
	}
	// The same port over UDP is another port.
	uid, ns := pod(t, n, "udp")
	removeMasqRules(t, uid)
	removeDNATRules(t, uid)
	if _, err := n.SetupWithPorts(ctx, uid, ns, []PortMapping{{HostPort: hp, ContainerPort: 80, Protocol: "UDP"}}); err != nil {
		t.Error(err)
	}
	if err := n.Teardown(ctx, uid, ns); err != nil {
		t.Fatal(err)
	}
	// Once the first pod is gone its port is free.
	if err := n.Teardown(ctx, a, nsA); err != nil {
		t.Fatal(err)
	}
	b, nsB := pod(t, n, "second")
	removeMasqRules(t, b)
	removeDNATRules(t, b)
	if _, err := n.SetupWithPorts(ctx, b, nsB, []PortMapping{{HostPort: hp, ContainerPort: 81}}); err != nil {
		t.Error(err)
	}
	if err := n.Teardown(ctx, b, nsB); err != nil {
		t.Fatal(err)
	}
}

// An agentd killed after portmap's ADD, before libcni cached the result:
// the cache does not know the ports, but teardown and Collect still remove
// the rules.
func TestHostPortCrashAfterAdd(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	n, stateDir := newPortmapNetwork(t, "r")

	for _, op := range []string{"setup", "collect"} {
		uid, ns := pod(t, n, "crash-"+op)
		removeMasqRules(t, uid)
		removeDNATRules(t, uid)
		hp := testHostPort(t, 2)
		crashDuring(t, n, "network-portmap-added", helperJob{Op: "setup", UID: uid, NetNS: ns,
			Ports: []PortMapping{{HostPort: hp, ContainerPort: 8080}}})
		if rules, chain := dnatRulesOf(t, uid); len(rules) == 0 || !chain {
			t.Fatalf("the killed ADD left no DNAT rules: %v", rules)
		}
		if cacheEntryExists(t, stateDir, uid) {
			t.Fatal("libcni cached the killed ADD")
		}
		switch op {
		case "setup":
			// Setup again: it deletes first, then forwards the port to the new attachment.
			echoIn(t, ns, 8080, uid)
			if _, err := n.SetupWithPorts(ctx, uid, ns, []PortMapping{{HostPort: hp, ContainerPort: 8080}}); err != nil {
				t.Fatal(err)
			}
			if got, err := dialLine(net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hp)))); err != nil || got != uid {
				t.Errorf("after Setup again: got %q, %v", got, err)
			}
			if err := n.Teardown(ctx, uid, ns); err != nil {
				t.Fatal(err)
			}
		case "collect":
			unpinNetNS(t, ns) // as agentd collects a pod it removed
			if _, err := n.Collect(ctx, func(string) bool { return false }); err != nil {
				t.Fatal(err)
			}
		}
		if rules, chain := dnatRulesOf(t, uid); len(rules) > 0 || chain {
			t.Errorf("%s: DNAT rules left (chain %v): %v", op, chain, rules)
		}
		assertGone(t, stateDir, uid)
	}
}

// A pod attached by an agentd without portmap in its configuration keeps its
// attachment under one with it, and tears down cleanly.
func TestAttachmentWithoutPortmap(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	n, stateDir := newPortmapNetwork(t, "s")
	oldList, err := listWithout(n.list, "portmap")
	if err != nil {
		t.Fatal(err)
	}
	old := &Network{cfg: n.cfg, subnet: n.subnet, gateway: n.gateway, list: oldList, checkList: oldList, cni: n.cni, log: n.log}

	uid, ns := pod(t, n, "old")
	removeMasqRules(t, uid)
	ip, err := old.Setup(ctx, uid, ns)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := n.Setup(ctx, uid, ns); err != nil || again != ip {
		t.Errorf("Setup by the new configuration: %s, %v; want the old attachment's %s", again, err, ip)
	}
	if err := n.Teardown(ctx, uid, ns); err != nil {
		t.Fatal(err)
	}
	assertGone(t, stateDir, uid)
	if _, err := os.Stat(filepath.Join(pendingDir(stateDir), uid)); err == nil {
		t.Error("pending marker left")
	}
}

// countPlugins runs n's plugins through wrappers that log "<plugin> <CNI_COMMAND>"
// and returns a function that lists the ADD, CHECK and DEL runs since.
func countPlugins(t *testing.T, n *Network) func() []string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "log")
	for _, p := range requiredPlugins {
		real, err := invoke.FindInPath(p, n.cfg.PluginDirs)
		if err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf("#!/bin/sh\necho \"%s $CNI_COMMAND\" >>%s\nexec %s \"$@\"\n", p, log, real)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n.cfg.PluginDirs = []string{dir}
	n.cni = libcni.NewCNIConfigWithCacheDir(n.cfg.PluginDirs, cacheDir(n.cfg.StateDir), crashExec{defaultExec()})
	return func() []string {
		data, _ := os.ReadFile(log)
		_ = os.Remove(log)
		var runs []string
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if l != "" && !strings.HasSuffix(l, " VERSION") {
				runs = append(runs, l)
			}
		}
		return runs
	}
}

// portmap runs only for pods with host ports: a pod without is attached,
// checked and detached by bridge (and host-local) alone; given ports later it
// is attached again with portmap, and detached with it.
func TestPortmapOnlyForHostPorts(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	n, stateDir := newPortmapNetwork(t, "o")
	ran := countPlugins(t, n)

	uid, ns := pod(t, n, "noports")
	removeMasqRules(t, uid)
	removeDNATRules(t, uid)
	ip, err := n.Setup(ctx, uid, ns)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := n.Setup(ctx, uid, ns); err != nil || again != ip {
		t.Errorf("second Setup: %s, %v; want %s", again, err, ip)
	}
	runs := ran()
	if slices.ContainsFunc(runs, func(r string) bool { return strings.HasPrefix(r, "portmap") }) ||
		!slices.Contains(runs, "bridge ADD") || !slices.Contains(runs, "bridge CHECK") {
		t.Errorf("Setup and Setup again of a pod without host ports ran %v; want bridge ADD, CHECK and no portmap", runs)
	}

	// Host ports later: attached again, with portmap, and the port answers.
	hp := testHostPort(t, 3)
	echoIn(t, ns, 8080, "later")
	if _, err := n.SetupWithPorts(ctx, uid, ns, []PortMapping{{HostPort: hp, ContainerPort: 8080}}); err != nil {
		t.Fatal(err)
	}
	if runs := ran(); !slices.Contains(runs, "portmap ADD") {
		t.Errorf("SetupWithPorts of the pod ran %v; want a portmap ADD", runs)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(hp)))
	if got, err := dialLine(addr); err != nil || got != "later" {
		t.Errorf("%s: got %q, %v; want \"later\"", addr, got, err)
	}
	if err := n.Teardown(ctx, uid, ns); err != nil {
		t.Fatal(err)
	}
	if runs := ran(); !slices.Contains(runs, "portmap DEL") || !slices.Contains(runs, "bridge DEL") {
		t.Errorf("Teardown of the pod with host ports ran %v; want portmap and bridge DEL", runs)
	}
	if rules, chain := dnatRulesOf(t, uid); len(rules) > 0 || chain {
		t.Errorf("DNAT rules left after Teardown (chain %v): %v", chain, rules)
	}
	assertGone(t, stateDir, uid)

	// And a pod without ports is detached without portmap.
	uid2, ns2 := pod(t, n, "noports2")
	removeMasqRules(t, uid2)
	if _, err := n.Setup(ctx, uid2, ns2); err != nil {
		t.Fatal(err)
	}
	ran()
	if err := n.Teardown(ctx, uid2, ns2); err != nil {
		t.Fatal(err)
	}
	if runs := ran(); slices.ContainsFunc(runs, func(r string) bool { return strings.HasPrefix(r, "portmap") }) || !slices.Contains(runs, "bridge DEL") {
		t.Errorf("Teardown of a pod without host ports ran %v; want bridge DEL and no portmap", runs)
	}
	assertGone(t, stateDir, uid2)
}

// An agentd killed after portmap's DEL, before bridge's: the next Teardown
// finishes, with portmap's DEL finding nothing left to do.
func TestHostPortCrashAfterDelete(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	n, stateDir := newPortmapNetwork(t, "t")
	uid, ns := pod(t, n, "crash-del")
	removeMasqRules(t, uid)
	removeDNATRules(t, uid)
	hp := testHostPort(t, 3)
	if _, err := n.SetupWithPorts(ctx, uid, ns, []PortMapping{{HostPort: hp, ContainerPort: 8080}}); err != nil {
		t.Fatal(err)
	}
	crashDuring(t, n, "network-portmap-deleted", helperJob{Op: "teardown", UID: uid, NetNS: ns})
	if rules, chain := dnatRulesOf(t, uid); len(rules) > 0 || chain {
		t.Errorf("portmap's DEL left DNAT rules (chain %v): %v", chain, rules)
	}
	if !cacheEntryExists(t, stateDir, uid) {
		t.Fatal("the killed teardown removed the cache entry")
	}
	if err := n.Teardown(ctx, uid, ns); err != nil {
		t.Fatal(err)
	}
	assertGone(t, stateDir, uid)
}

// route_localnet, which portmap turns on for the bridge so that
// 127.0.0.1:hostPort works, would let a pod that can route 127.0.0.0/8 out of
// its eth0 (CAP_NET_ADMIN in its namespace, or raw sockets) reach the host's
// loopback-only services; the localnet guard drops those packets.
func TestLocalnetGuard(t *testing.T) {
	testutil.RequiresRoot(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter not installed")
	}
	ctx := context.Background()
	n, _ := newPortmapNetwork(t, "u")
	uid, ns := pod(t, n, "localnet")
	removeMasqRules(t, uid)
	removeDNATRules(t, uid)
	if _, err := n.SetupWithPorts(ctx, uid, ns, []PortMapping{{HostPort: testHostPort(t, 4), ContainerPort: 8080}}); err != nil {
		t.Fatal(err)
	}
	// The pod sends 127.0.0.0/8 to the gateway, as a hostile one could (its
	// lo is down here: no local route for 127.0.0.0/8 takes precedence).
	for _, args := range [][]string{
		{"sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"},
		{"ip", "route", "add", "127.0.0.0/8", "via", n.Gateway(), "dev", "eth0"},
	} {
		if out, err := exec.Command("nsenter", append([]string{"--net=" + ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("in the pod: %v: %v: %s", args, err, out)
		}
	}
	// A service of the host on its loopback only.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = fmt.Fprintln(c, "host secret")
			c.Close()
		}
	}()
	dialFromPod := func(timeout time.Duration) (string, error) {
		var got string
		err := inNetNS(t, ns, func() error {
			c, err := net.DialTimeout("tcp4", l.Addr().String(), timeout)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(timeout))
			got, err = bufio.NewReader(c).ReadString('\n')
			return err
		})
		return strings.TrimSpace(got), err
	}
	guardHits := func() int {
		out, _ := exec.Command("iptables", "-w", "-t", "filter", "-L", "INPUT", "-v", "-x", "-n").Output()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "pods may not reach the host loopback") && strings.Contains(line, n.cfg.Bridge) {
				f := strings.Fields(line)
				if v, err := strconv.Atoi(f[0]); err == nil {
					return v
				}
			}
		}
		return -1
	}
	before := guardHits()
	if before < 0 {
		t.Fatal("no localnet guard rule")
	}
	// The guard drops the SYN, so the connect fails (times out); its counter
	// shows that it was the guard.
	if got, err := dialFromPod(2 * time.Second); err == nil {
		t.Fatalf("the pod reached the host's loopback service: %q", got)
	}
	if after := guardHits(); after <= before {
		t.Errorf("the guard dropped nothing (%d packets before, %d after)", before, after)
	}
	// Without the guard the same connection gets through: what it is for.
	if err := n.RemoveLocalnetGuard(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := dialFromPod(10 * time.Second); err != nil || got != "host secret" {
		t.Errorf("without the guard: %q, %v (the test's route does not reach the host)", got, err)
	}
	if err := n.Teardown(ctx, uid, ns); err != nil {
		t.Fatal(err)
	}
}
