package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestRootProtectHostPorts attaches a pod to a bridge of its own
// (agfw<random>, a free 10.199.x.0/24), listens on 0.0.0.0 on the host, and
// checks that the pod reaches the listener at every node address it can aim
// at — the gateway, the host's other IPv4 addresses, the bridge's IPv6
// link-local address — until ProtectHostPorts, is refused with a reset after
// it, and reaches it again after ProtectHostPorts(nil), which leaves no chain
// or jump behind. It touches only the chains and INPUT rules of its own
// bridges' names.
func TestRootProtectHostPorts(t *testing.T) {
	testutil.RequiresRoot(t)
	families := hostFamilies()
	for _, fam := range families {
		if _, err := exec.LookPath(fam.cmd); err != nil {
			t.Skipf("%s not installed (hack/install-deps.sh installs it)", fam.cmd)
		}
	}
	ctx := context.Background()
	br, br2 := randomBridgeNames(t)
	testBridgeNamed(t, br)
	subnet := testSubnet(t, "10.199.0.0/16", 24, 'f')
	cfg := Config{Bridge: br, Subnet: subnet.String(), StateDir: t.TempDir()}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		removeEmptyTable(t, map[string]string{"iptables": "ip", "ip6tables": "ip6"}[fam.cmd], "filter")
	}
	removeHostPortRules(t, br)
	removeHostPortRules(t, br2)
	uid, ns := pod(t, n, "fw")
	podIP, err := n.Setup(ctx, uid, ns)
	if err != nil {
		t.Fatal(err)
	}

	l := listenEverywhere(t, len(families) > 1)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	targets := hostTargets(t, br, ns, subnet, port)
	t.Logf("pod %s on %s; listener port %d; targets %v", podIP, br, port, targets)

	for _, a := range targets {
		waitConnect(t, ns, a)
	}

	if err := n.ProtectHostPorts(ctx, []uint16{port}); err != nil {
		t.Fatal(err)
	}
	// The connects first: they are what the pods see.
	for _, a := range targets {
		expectRefused(t, ns, a)
	}
	// The refusals are the rule's doing (the chain is new, its counters
	// started at 0): each refused connect is one SYN it counted.
	g := newHostGuard(br)
	want := map[string]int{}
	for _, a := range targets {
		want[familyOf(a).cmd]++
	}
	for _, fam := range families {
		if got := rejectCount(t, fam, g.chain); got < want[fam.cmd] {
			t.Errorf("%s: the REJECT rule counted %d packets, want at least %d: something else refused the connects", fam.cmd, got, want[fam.cmd])
		}
	}
	checkProtected(ctx, t, n, families, g, []uint16{port})
	for _, fam := range families {
		input, err := xtablesOutput(ctx, fam.cmd, "-t", "filter", "-S", "INPUT")
		if err != nil {
			t.Fatal(err)
		}
		if rules := parseRuleLines(input); len(rules) == 0 || !slices.Equal(rules[0].spec, g.jumpSpec()) {
			t.Errorf("%s: the jump to %s is not the first rule of INPUT:\n%s", fam.cmd, g.chain, input)
		}
	}
	// Only the bridge is concerned: the host itself still connects.
	if c, err := net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr(n.Gateway()), port).String(), 5*time.Second); err != nil {
		t.Errorf("the host cannot reach its own port any more: %v", err)
	} else {
		c.Close()
	}

	// Idempotent: a second call changes nothing.
	before := filterListings(t, families)
	if err := n.ProtectHostPorts(ctx, []uint16{port, port}); err != nil {
		t.Fatal(err)
	}
	if got := filterListings(t, families); got != before {
		t.Errorf("a second ProtectHostPorts with the same ports changed the rules:\n%s\nto\n%s", before, got)
	}

	// Another agentd on another bridge has rules of its own, which ours leave alone.
	n2, err := New(Config{Bridge: br2, Subnet: "10.77.0.0/16", StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.ProtectHostPorts(ctx, []uint16{port}); err != nil {
		t.Fatal(err)
	}
	// The ports follow a change.
	other := uint16(1)
	if port == 1 {
		other = 2
	}
	if err := n.ProtectHostPorts(ctx, []uint16{port, other}); err != nil {
		t.Fatal(err)
	}
	checkProtected(ctx, t, n, families, g, []uint16{min(port, other), max(port, other)})

	// agentd killed while removing: the IPv4 jump is gone, the chain is
	// left. A restarted agentd (a new Network) removes the rest.
	jump := append([]string{"-t", "filter", "-D", "INPUT"}, g.jumpSpec()...)
	if _, err := xtablesOutput(ctx, "iptables", jump...); err != nil {
		t.Fatal(err)
	}
	restarted, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := restarted.HostPortsProtected(ctx); err != nil || len(got) != 0 {
		t.Errorf("HostPortsProtected with a chain but no jump = %v, %v; want none", got, err)
	}
	if err := restarted.ProtectHostPorts(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkProtected(ctx, t, restarted, families, g, nil)
	for _, a := range targets {
		waitConnect(t, ns, a)
	}
	checkProtected(ctx, t, n2, families, newHostGuard(br2), []uint16{port})
	if err := n2.ProtectHostPorts(ctx, nil); err != nil {
		t.Fatal(err)
	}
	checkProtected(ctx, t, n2, families, newHostGuard(br2), nil)
}

// listenEverywhere listens on a free TCP port on every address of the host,
// IPv6 ones too when ipv6: what etcd gets for a 0.0.0.0 URL, as Go listens
// dual-stack on a "tcp" wildcard. The socket is made by hand because Go
// decides that by a once-per-process probe, which in this test binary may
// run on a thread in a pod's namespace, where there is no IPv6 loopback, and
// then listens on IPv4 only.
func listenEverywhere(t *testing.T, ipv6 bool) net.Listener {
	t.Helper()
	if !ipv6 {
		l, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "dual-stack listener")
	defer f.Close() // FileListener dups it
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet6{}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 64); err != nil {
		t.Fatal(err)
	}
	l, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// randomBridgeNames returns two bridge names agfw<random> and agfw<random>b
// that no interface has.
func randomBridgeNames(t *testing.T) (string, string) {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	br := "agfw" + hex.EncodeToString(b)
	for _, name := range []string{br, br + "b"} {
		if _, err := net.InterfaceByName(name); err == nil {
			t.Fatalf("interface %s exists already", name)
		}
	}
	return br, br + "b"
}

// hostTargets lists the addresses of the node a pod can aim at: the gateway,
// the host's other IPv4 addresses, and the bridge's IPv6 link-local address
// when the bridge and the pod have IPv6 on.
func hostTargets(t *testing.T, br, ns string, subnet netip.Prefix, port uint16) []netip.AddrPort {
	t.Helper()
	targets := []netip.AddrPort{netip.AddrPortFrom(subnet.Addr().Next(), port)}
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagLoopback != 0 || iface.Name == br {
			continue
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !subnet.Contains(p.Addr()) {
				targets = append(targets, netip.AddrPortFrom(p.Addr(), port))
			}
		}
	}
	if ipv6Off(t, "", br) || ipv6Off(t, ns, ifName) {
		t.Logf("no IPv6 on %s or in the pod: no link-local target", br)
		return targets
	}
	// The zone is the pod's eth0 by index: Go resolves a zone name with a
	// process-wide cache of the host's interfaces.
	var zone string
	if err := inNetNS(t, ns, func() error {
		iface, err := net.InterfaceByName(ifName)
		if err == nil {
			zone = strconv.Itoa(iface.Index)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The kernel adds the link-local address once the bridge has a port up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		iface, err := net.InterfaceByName(br)
		if err != nil {
			t.Fatal(err)
		}
		addrs, _ := iface.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsLinkLocalUnicast() {
				return append(targets, netip.AddrPortFrom(p.Addr().WithZone(zone), port))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("bridge %s has IPv6 on but no link-local address after 30s", br)
		}
		time.Sleep(50 * time.Millisecond) // polling the interface, which has no event to wait for here
	}
}

// ipv6Off says whether IPv6 is off on an interface in the namespace ns ("" for
// the host): it has no IPv6 address, not even a tentative link-local one.
func ipv6Off(t *testing.T, ns, iface string) bool {
	t.Helper()
	var b []byte
	read := func() (err error) {
		// The thread's own namespace: /proc/self/net is the thread group
		// leader's, which inNetNS does not move.
		b, err = os.ReadFile("/proc/thread-self/net/if_inet6")
		return err
	}
	var err error
	if ns == "" {
		err = read()
	} else {
		err = inNetNS(t, ns, read)
	}
	return err != nil || !strings.Contains(string(b), " "+iface+"\n")
}

// familyOf is the family whose filter table sees connects to a.
func familyOf(a netip.AddrPort) ipFamily {
	if a.Addr().Is4() {
		return familyIPv4
	}
	return familyIPv6
}

// dialFrom connects from the namespace to a and closes the connection.
func dialFrom(t *testing.T, ns string, a netip.AddrPort, timeout time.Duration) error {
	t.Helper()
	return inNetNS(t, ns, func() error {
		c, err := net.DialTimeout("tcp", a.String(), timeout)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// waitConnect waits until the pod connects to a: an IPv6 link-local address
// is usable only once duplicate address detection is done, on either side.
func waitConnect(t *testing.T, ns string, a netip.AddrPort) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := dialFrom(t, ns, a, 2*time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod cannot connect to %s: %v", a, err)
		}
		time.Sleep(50 * time.Millisecond) // retrying a connect, which has no event to wait for
	}
}

// expectRefused checks that a connect from the pod to a is refused, at once.
func expectRefused(t *testing.T, ns string, a netip.AddrPort) {
	t.Helper()
	start := time.Now()
	err := dialFrom(t, ns, a, 10*time.Second)
	took := time.Since(start)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("connect from the pod to %s after ProtectHostPorts: %v after %v, want connection refused at once", a, err, took)
		return
	}
	t.Logf("connect to %s refused after %v", a, took)
}

// checkProtected checks what n says it protects and what the filter tables
// hold: with ports, one jump and one rule in the chain, nothing left to
// change; without, neither chain nor jump.
func checkProtected(ctx context.Context, t *testing.T, n *Network, families []ipFamily, g hostGuard, ports []uint16) {
	t.Helper()
	if got, err := n.HostPortsProtected(ctx); err != nil || !slices.Equal(got, ports) {
		t.Errorf("HostPortsProtected = %v, %v; want %v", got, err, ports)
	}
	for _, fam := range families {
		out, err := xtablesOutput(ctx, fam.cmd, "-t", "filter", "-S")
		if err != nil {
			t.Fatal(err)
		}
		st := g.parseHostPorts(out)
		if len(ports) == 0 {
			if st.chainExists || st.jumps != nil || strings.Contains(out, g.chain) || strings.Contains(out, g.bridge+" ") {
				t.Errorf("%s: rules of bridge %s left after ProtectHostPorts(nil):\n%s", fam.cmd, g.bridge, out)
			}
			continue
		}
		if again := g.plan(st, ports); again != nil {
			t.Errorf("%s: ProtectHostPorts(%v) left changes to make: %q\n%s", fam.cmd, ports, again, out)
		}
		if len(st.jumps) != 1 || len(st.rules) != 1 {
			t.Errorf("%s: want one jump to %s and one rule in it:\n%s", fam.cmd, g.chain, out)
		}
	}
}

// rejectCount sums the packet counters of the chain's rules.
func rejectCount(t *testing.T, fam ipFamily, chain string) int {
	t.Helper()
	out, err := xtablesOutput(context.Background(), fam.cmd, "-t", "filter", "-L", chain, "-n", "-v", "-x")
	if err != nil {
		t.Errorf("read the counters: %v", err)
		return 0
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			if c, err := strconv.Atoi(f[0]); err == nil {
				n += c
			}
		}
	}
	return n
}

// filterListings is `iptables -S` and `ip6tables -S` of the filter table.
func filterListings(t *testing.T, families []ipFamily) string {
	t.Helper()
	var b strings.Builder
	for _, fam := range families {
		out, err := xtablesOutput(context.Background(), fam.cmd, "-t", "filter", "-S")
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:\n%s", fam.cmd, out)
	}
	return b.String()
}

// removeHostPortRules removes after the test, should the test have failed
// to, the chain of the network on bridge and the INPUT rules that jump to it,
// with iptables itself rather than the code under test.
func removeHostPortRules(t *testing.T, bridge string) {
	t.Cleanup(func() {
		chain := hostPortsChain(networkName, bridge)
		for _, cmd := range []string{"iptables", "ip6tables"} {
			out, err := exec.Command(cmd, "-w", "-t", "filter", "-S").Output()
			if err != nil || !strings.Contains(string(out), chain) {
				continue
			}
			t.Logf("cleanup: removing %s chain %s", cmd, chain)
			for _, r := range parseRuleLines(string(out)) {
				if r.chain != chain && r.target() == chain {
					if out, err := exec.Command(cmd, append([]string{"-w", "-t", "filter", "-D", r.chain}, r.spec...)...).CombinedOutput(); err != nil {
						t.Errorf("cleanup: %s -D %s %q: %v: %s", cmd, r.chain, r.spec, err, out)
					}
				}
			}
			for _, op := range []string{"-F", "-X"} {
				if out, err := exec.Command(cmd, "-w", "-t", "filter", op, chain).CombinedOutput(); err != nil {
					t.Errorf("cleanup: %s %s %s: %v: %s", cmd, op, chain, err, out)
				}
			}
		}
	})
}
