package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// These tests touch only what they create: network namespaces pinned in
// t.TempDir(), a bridge named agt<pid%1000><letter>, a 10.199.x.0/24 or
// 10.198.x.y/30 subnet no host interface uses, and (TestMasqRemovedWhenNamespaceGone)
// the pod's own nat chain. Traffic stays on that bridge. The bridge plugin
// turns on net.ipv4.ip_forward (isGateway); the tests put the old value back.

// testBridge picks a bridge name no interface has and registers its removal.
func testBridge(t *testing.T, letter string) string {
	t.Helper()
	return testBridgeNamed(t, fmt.Sprintf("agt%d%s", os.Getpid()%1000, letter))
}

// testBridgeNamed checks that no interface is called br and registers the
// removal of the bridge the test's first pod brings.
func testBridgeNamed(t *testing.T, br string) string {
	t.Helper()
	if _, err := net.InterfaceByName(br); err == nil {
		t.Fatalf("interface %s exists already: remove it (ip link delete %s) if an earlier test run left it", br, br)
	}
	restoreIPForward(t)
	t.Cleanup(func() {
		if _, err := net.InterfaceByName(br); err != nil {
			return
		}
		if out, err := exec.Command("ip", "link", "delete", "dev", br, "type", "bridge").CombinedOutput(); err != nil {
			t.Errorf("remove test bridge %s: %v: %s", br, err, out)
		}
	})
	return br
}

// testSubnet picks a subnet with the given prefix length inside base (a /16)
// that overlaps no address of the host's interfaces; salt varies it between tests.
func testSubnet(t *testing.T, base string, bits, salt int) netip.Prefix {
	t.Helper()
	var used []netip.Prefix
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			used = append(used, p.Masked())
		}
	}
	start := netip.MustParsePrefix(base).Addr().As4()
	size := 1 << (32 - bits)
	for i := 0; i < 256; i++ {
		off := ((os.Getpid() + salt + i) % (65536 / size)) * size
		a := start
		a[2], a[3] = byte(off>>8), byte(off)
		p := netip.PrefixFrom(netip.AddrFrom4(a), bits)
		free := true
		for _, u := range used {
			free = free && !u.Overlaps(p)
		}
		if free {
			return p
		}
	}
	t.Fatalf("no free /%d in %s", bits, base)
	return netip.Prefix{}
}

// restoreIPForward puts net.ipv4.ip_forward back once the test is done.
func restoreIPForward(t *testing.T) {
	const path = "/proc/sys/net/ipv4/ip_forward"
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cur, _ := os.ReadFile(path); string(cur) != string(old) {
			if err := os.WriteFile(path, old, 0o644); err != nil {
				t.Errorf("restore %s: %v", path, err)
			}
		}
	})
}

// newNetNS creates a network namespace pinned at a file in t.TempDir(), as
// agent/runtime does, and registers its removal.
func newNetNS(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "net")
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				return err
			}
			return unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, "")
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create network namespace: %v", err)
	}
	t.Cleanup(func() { unpinNetNS(t, path) })
	return path
}

// unpinNetNS removes a pinned namespace's mount; the kernel then destroys the
// namespace and the veth end in it.
func unpinNetNS(t *testing.T, path string) {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		t.Errorf("unmount %s: %v", path, err)
	}
}

// inNetNS runs fn on a thread in the namespace at path. Sockets fn opens stay
// in that namespace whichever thread uses them later.
func inNetNS(t *testing.T, path string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		errc <- func() error {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("setns %s: %w", path, err)
			}
			return fn()
		}()
	}()
	return <-errc
}

// listenIn opens a TCP listener on ip inside the namespace.
func listenIn(t *testing.T, nsPath, ip string) net.Listener {
	t.Helper()
	var l net.Listener
	if err := inNetNS(t, nsPath, func() (err error) {
		l, err = net.Listen("tcp4", net.JoinHostPort(ip, "0"))
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %s: %v", ip, nsPath, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// exchange dials l's address from the namespace nsPath ("" for the host),
// sends a line and returns the remote address l saw and the line it read.
func exchange(t *testing.T, nsPath string, l net.Listener) (peer string, line string) {
	t.Helper()
	type accepted struct {
		peer, line string
		err        error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		s, err := bufio.NewReader(c).ReadString('\n')
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		acc <- accepted{host, strings.TrimSpace(s), err}
	}()
	dial := func() error {
		c, err := net.DialTimeout("tcp4", l.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = io.WriteString(c, "hello from "+nsPath+"\n")
		return err
	}
	var err error
	if nsPath == "" {
		err = dial()
	} else {
		err = inNetNS(t, nsPath, dial)
	}
	if err != nil {
		l.Close() // ends the Accept
		t.Fatalf("connect from %q to %s: %v", nsPath, l.Addr(), err)
	}
	select {
	case a := <-acc:
		if a.err != nil {
			t.Fatalf("accept on %s: %v", l.Addr(), a.err)
		}
		return a.peer, a.line
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing accepted on %s", l.Addr())
	}
	return "", ""
}

// bridgePorts lists the interfaces attached to the bridge (the pods' host-side veths).
func bridgePorts(t *testing.T, br string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join("/sys/class/net", br, "brif"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// hasEth0 says whether the namespace has the pod interface.
func hasEth0(t *testing.T, nsPath string) bool {
	t.Helper()
	found := false
	if err := inNetNS(t, nsPath, func() error {
		_, err := net.InterfaceByName(ifName)
		found = err == nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}

// reserved says whether host-local holds ip for a pod.
func reserved(stateDir, ip string) bool {
	_, err := os.Stat(filepath.Join(ipamDir(stateDir), networkName, ip))
	return err == nil
}

// newTestNetwork makes a Network on its own bridge and subnet; with masq, the
// bridge plugin masquerades each pod (legacyPluginMasq).
func newTestNetwork(t *testing.T, letter, base string, bits int, masq bool) (*Network, string, netip.Prefix, string) {
	t.Helper()
	br := testBridge(t, letter)
	subnet := testSubnet(t, base, bits, int(letter[0]))
	stateDir := t.TempDir()
	// masq: as an agentd from before SetupMasquerade, the bridge plugin's
	// per-pod chains, which teardown still removes.
	n, err := New(Config{Bridge: br, Subnet: subnet.String(), StateDir: stateDir, IPMasq: masq, legacyPluginMasq: masq})
	if err != nil {
		t.Fatal(err)
	}
	return n, br, subnet, stateDir
}

// pod is one test pod: a UID unique to this run and its pinned namespace,
// torn down after the test (before the namespace goes).
func pod(t *testing.T, n *Network, name string) (uid, nsPath string) {
	t.Helper()
	uid = fmt.Sprintf("agentd-test-%d-%s", os.Getpid(), name)
	nsPath = newNetNS(t)
	t.Cleanup(func() {
		if err := n.Teardown(context.Background(), uid, nsPath); err != nil {
			t.Errorf("cleanup: teardown %s: %v", uid, err)
		}
	})
	return uid, nsPath
}

func TestPodsGetAddressesAndReachEachOther(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	n, br, subnet, stateDir := newTestNetwork(t, "a", "10.199.0.0/16", 24, false)

	if want := subnet.Addr().Next().String(); n.Gateway() != want {
		t.Errorf("Gateway() = %s, want %s", n.Gateway(), want)
	}
	uidA, nsA := pod(t, n, "a")
	uidB, nsB := pod(t, n, "b")
	ipA, err := n.Setup(ctx, uidA, nsA)
	if err != nil {
		t.Fatal(err)
	}
	ipB, err := n.Setup(ctx, uidB, nsB)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pod a %s, pod b %s, gateway %s on %s", ipA, ipB, n.Gateway(), br)
	for _, ip := range []string{ipA, ipB} {
		a, err := netip.ParseAddr(ip)
		if err != nil || !subnet.Contains(a) || ip == n.Gateway() {
			t.Errorf("pod address %q is not a pod address in %s", ip, subnet)
		}
	}
	if ipA == ipB {
		t.Fatalf("both pods got %s", ipA)
	}

	// The bridge carries the gateway address.
	brIf, err := net.InterfaceByName(br)
	if err != nil {
		t.Fatalf("bridge %s was not created: %v", br, err)
	}
	brAddrs, _ := brIf.Addrs()
	if len(brAddrs) == 0 || !strings.HasPrefix(brAddrs[0].String(), n.Gateway()+"/") {
		t.Errorf("bridge %s addresses %v, want %s/%d", br, brAddrs, n.Gateway(), subnet.Bits())
	}
	if ports := bridgePorts(t, br); len(ports) != 2 {
		t.Errorf("bridge ports %v, want two veths", ports)
	}

	// Pod a reaches pod b directly (no NAT: b sees a's address).
	lB := listenIn(t, nsB, ipB)
	if peer, line := exchange(t, nsA, lB); peer != ipA || line != "hello from "+nsA {
		t.Errorf("pod b accepted %q from %s, want the line from pod a at %s", line, peer, ipA)
	}
	// The host reaches the pod through the bridge, from the gateway address.
	if peer, _ := exchange(t, "", lB); peer != n.Gateway() {
		t.Errorf("pod b saw the host as %s, want the gateway %s", peer, n.Gateway())
	}

	// Setup is idempotent, also for a new Network over the same state (agentd restarted).
	if again, err := n.Setup(ctx, uidA, nsA); err != nil || again != ipA {
		t.Errorf("Setup again = %q, %v; want %s", again, err, ipA)
	}
	n2, err := New(Config{Bridge: br, Subnet: subnet.String(), StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := n2.Setup(ctx, uidB, nsB); err != nil || again != ipB {
		t.Errorf("Setup by a new Network = %q, %v; want %s", again, err, ipB)
	}
	if ports := bridgePorts(t, br); len(ports) != 2 {
		t.Errorf("bridge ports after repeated Setup %v, want two veths", ports)
	}

	// Teardown detaches and releases.
	if err := n.Teardown(ctx, uidA, nsA); err != nil {
		t.Fatal(err)
	}
	if hasEth0(t, nsA) {
		t.Error("pod a still has eth0 after Teardown")
	}
	if ports := bridgePorts(t, br); len(ports) != 1 {
		t.Errorf("bridge ports after Teardown %v, want one veth", ports)
	}
	if reserved(stateDir, ipA) {
		t.Errorf("%s is still reserved after Teardown", ipA)
	}
	if !reserved(stateDir, ipB) {
		t.Errorf("%s of pod b is not reserved", ipB)
	}
	if peer, _ := exchange(t, "", lB); peer != n.Gateway() {
		t.Error("pod b lost its network when pod a was torn down")
	}

	// Teardown is idempotent and succeeds when there is nothing to tear down.
	if err := n.Teardown(ctx, uidA, nsA); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	if err := n.Teardown(ctx, "agentd-test-never-set-up", filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("Teardown of an unknown pod without a namespace: %v", err)
	}
	_, nsC := pod(t, n, "c")
	if err := n.Teardown(ctx, "agentd-test-never-set-up", nsC); err != nil {
		t.Errorf("Teardown of an unknown pod with a namespace: %v", err)
	}

	// A torn-down pod can be set up again.
	ipA2, err := n.Setup(ctx, uidA, nsA)
	if err != nil {
		t.Fatal(err)
	}
	lA := listenIn(t, nsA, ipA2)
	if peer, _ := exchange(t, nsB, lA); peer != ipB {
		t.Errorf("pod a (set up again at %s) saw pod b as %s, want %s", ipA2, peer, ipB)
	}
}

func TestSetupRepairsBrokenAttachment(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	n, br, _, stateDir := newTestNetwork(t, "r", "10.199.0.0/16", 24, false)
	uid, ns := pod(t, n, "broken")
	ip, err := n.Setup(ctx, uid, ns)
	if err != nil {
		t.Fatal(err)
	}
	// Someone deletes the pod's interface (and with it the veth).
	if err := inNetNS(t, ns, func() error {
		out, err := exec.Command("ip", "link", "delete", "dev", ifName).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	ip2, err := n.Setup(ctx, uid, ns)
	if err != nil {
		t.Fatalf("Setup of a pod whose eth0 was deleted: %v", err)
	}
	if !hasEth0(t, ns) || len(bridgePorts(t, br)) != 1 {
		t.Errorf("after repair: eth0 %v, bridge ports %v", hasEth0(t, ns), bridgePorts(t, br))
	}
	if ip2 != ip && reserved(stateDir, ip) {
		t.Errorf("old address %s still reserved next to the new %s", ip, ip2)
	}
	l := listenIn(t, ns, ip2)
	exchange(t, "", l)
}

func TestTeardownReleasesAddress(t *testing.T) {
	testutil.RequiresRoot(t)
	ctx := context.Background()
	// A /30 has room for exactly one pod.
	n, br, subnet, _ := newTestNetwork(t, "b", "10.198.0.0/16", 30, false)
	uid1, ns1 := pod(t, n, "first")
	uid2, ns2 := pod(t, n, "second")

	ip1, err := n.Setup(ctx, uid1, ns1)
	if err != nil {
		t.Fatal(err)
	}
	if want := subnet.Addr().Next().Next().String(); ip1 != want {
		t.Errorf("the only pod address of %s is %s, got %s", subnet, want, ip1)
	}
	if ip, err := n.Setup(ctx, uid2, ns2); err == nil {
		t.Fatalf("second pod got %s in a full %s", ip, subnet)
	} else {
		t.Logf("full subnet: %v", err)
	}
	// The failed Setup left nothing behind.
	if hasEth0(t, ns2) || len(bridgePorts(t, br)) != 1 {
		t.Errorf("failed Setup left eth0 %v, bridge ports %v", hasEth0(t, ns2), bridgePorts(t, br))
	}

	if err := n.Teardown(ctx, uid1, ns1); err != nil {
		t.Fatal(err)
	}
	ip2, err := n.Setup(ctx, uid2, ns2)
	if err != nil {
		t.Fatalf("Setup after the only address was released: %v", err)
	}
	if ip2 != ip1 {
		t.Errorf("second pod got %s, want the released %s", ip2, ip1)
	}
}

func TestMasqRulesRemoved(t *testing.T) {
	testutil.RequiresRoot(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables not installed (hack/install-deps.sh installs it)")
	}
	ctx := context.Background()
	n, _, _, stateDir := newTestNetwork(t, "m", "10.199.0.0/16", 24, true)
	removeEmptyNatTable(t)
	chainExists := func(uid string) bool {
		return exec.Command("iptables", "-w", "-t", "nat", "-S", masqChain(networkName, uid)).Run() == nil
	}

	for _, nsGone := range []bool{false, true} {
		uid, ns := pod(t, n, fmt.Sprintf("masq-%v", nsGone))
		removeMasqRules(t, uid)
		ip, err := n.Setup(ctx, uid, ns)
		if err != nil {
			t.Fatal(err)
		}
		// The plugin's chain has the name teardownMasq computes.
		if !chainExists(uid) {
			out, _ := exec.Command("iptables-save", "-t", "nat").CombinedOutput()
			t.Fatalf("no chain %s for pod %s in the nat table:\n%s", masqChain(networkName, uid), uid, out)
		}
		post, _ := exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output()
		if !strings.Contains(string(post), "-s "+ip+"/32") {
			t.Errorf("POSTROUTING has no rule for %s:\n%s", ip, post)
		}
		if nsGone {
			unpinNetNS(t, ns) // the runtime removed the sandbox first
		}
		if err := n.Teardown(ctx, uid, ns); err != nil {
			t.Fatal(err)
		}
		if chainExists(uid) {
			t.Errorf("namespace gone %v: chain %s left after Teardown", nsGone, masqChain(networkName, uid))
		}
		post, _ = exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output()
		if strings.Contains(string(post), uid) {
			t.Errorf("namespace gone %v: POSTROUTING rule left after Teardown:\n%s", nsGone, post)
		}
		if reserved(stateDir, ip) {
			t.Errorf("namespace gone %v: %s still reserved", nsGone, ip)
		}
	}
}

// removeMasqRules removes the pod's nat rules after the test, should Teardown
// have failed to: every POSTROUTING rule that names the pod, and its chain.
// It runs before removeEmptyNatTable's cleanup.
func removeMasqRules(t *testing.T, uid string) {
	t.Cleanup(func() {
		chain := masqChain(networkName, uid)
		if exec.Command("iptables", "-w", "-t", "nat", "-S", chain).Run() != nil {
			return
		}
		t.Errorf("cleanup: removing the nat chain %s that pod %s left", chain, uid)
		out, _ := exec.Command("iptables", "-w", "-t", "nat", "-S", "POSTROUTING").Output()
		for _, rule := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(rule, "-A POSTROUTING ") || !strings.Contains(rule, "-j "+chain) {
				continue
			}
			// iptables -S prints the rule as arguments; -s and the chain are
			// enough to delete it with the comment quoted back.
			src := strings.Fields(rule)[3]
			del := []string{"-w", "-t", "nat", "-D", "POSTROUTING", "-s", src, "-m", "comment", "--comment", masqComment(networkName, uid), "-j", chain}
			if out, err := exec.Command("iptables", del...).CombinedOutput(); err != nil {
				t.Errorf("cleanup: %v: %s", err, out)
			}
		}
		for _, op := range []string{"-F", "-X"} {
			if out, err := exec.Command("iptables", "-w", "-t", "nat", op, chain).CombinedOutput(); err != nil {
				t.Errorf("cleanup: iptables %s %s: %v: %s", op, chain, err, out)
			}
		}
	})
}

// removeEmptyNatTable drops the nat table after the test when the test's
// rules brought it into existence.
func removeEmptyNatTable(t *testing.T) { removeEmptyTable(t, "ip", "nat") }

// removeEmptyTable drops an nftables table of family ip or ip6 after the test
// when the test's rules brought it into existence (iptables-nft creates it on
// first use and leaves it behind, empty, in `iptables-save`).
func removeEmptyTable(t *testing.T, family, table string) {
	if _, err := exec.LookPath("nft"); err != nil {
		return
	}
	if exec.Command("nft", "list", "table", family, table).Run() == nil {
		return // it was there before: not ours
	}
	save := map[string]string{"ip": "iptables-save", "ip6": "ip6tables-save"}[family]
	t.Cleanup(func() {
		out, err := exec.Command(save, "-t", table).Output()
		if err != nil || strings.Contains(string(out), "\n-A ") {
			return // someone else's rules are in it now
		}
		if out, err := exec.Command("nft", "delete", "table", family, table).CombinedOutput(); err != nil {
			t.Logf("remove the empty %s %s table: %v: %s", family, table, err, out)
		}
	})
}
