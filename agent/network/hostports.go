package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
)

// Host port protection keeps pods away from TCP ports of the node that only
// the node and its peers may use (cluster mode's etcd client and peer ports and
// its join service). Every network (one per bridge) owns one chain in the
// filter table, jumped to from the top of INPUT for packets that come in on its
// bridge, so the node's every address is covered — the gateway, the node's
// other addresses, and the bridge's IPv6 link-local address — and the other
// rules of INPUT hardly matter:
//
//	-A INPUT -i agent0 -m comment --comment "agentd network \"agentd\" bridge \"agent0\": pods may not reach these host ports" -j AGENTD-HOST-<hash>
//	-A AGENTD-HOST-<hash> -p tcp -m multiport --dports 2379,2380,7946 -m comment --comment "<the same>" -j REJECT --reject-with tcp-reset
//
// A reset, not a drop, so that a pod's connect fails at once instead of timing out.
//
// The pod network is IPv4 only, but that does not keep pods off IPv6: the
// kernel gives the bridge and each pod's eth0 an IPv6 link-local address, and
// a Go server listening on "0.0.0.0:port" (etcd among them) gets a dual-stack
// socket, so a pod reaches it at fe80::…%eth0. The rules therefore go into
// ip6tables too, whenever the kernel has IPv6.
//
// The comment names agentd's network and the bridge, and the chain's name is
// a hash of them, so two agentds on one host with different bridges each find
// and remove only their own rules. Everything is read back from the kernel on
// every call; nothing is kept in memory or on disk, so rules an agentd killed
// half-way left behind are converged or removed by the next call.

// hostPortsChainPrefix starts the name of a network's chain.
const hostPortsChainPrefix = "AGENTD-HOST-"

// multiportMax is how many ports one multiport match takes.
const multiportMax = 15

// ipFamily is one address family's filter table, changed with its own command.
type ipFamily struct {
	name string // for messages: IPv4, IPv6
	cmd  string // iptables, ip6tables
}

var (
	familyIPv4 = ipFamily{"IPv4", "iptables"}
	familyIPv6 = ipFamily{"IPv6", "ip6tables"}
)

// hostFamilies lists the families the host has: IPv4, and IPv6 unless the
// kernel has it compiled out or turned off (ipv6.disable=1), in which case no
// pod can reach the node over it.
func hostFamilies() []ipFamily {
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return []ipFamily{familyIPv4}
	}
	return []ipFamily{familyIPv4, familyIPv6}
}

// hostGuard names one network's host port protection. Its methods are pure.
type hostGuard struct {
	bridge  string
	chain   string // AGENTD-HOST-<hash>
	comment string // on every rule, jump included
}

// newHostGuard names the protection of the network on bridge.
func newHostGuard(bridge string) hostGuard {
	return hostGuard{bridge: bridge, chain: hostPortsChain(networkName, bridge), comment: hostPortsComment(networkName, bridge)}
}

// hostPortsChain names the chain of a network on a bridge: 12 + 16 = 28
// characters, the most iptables takes.
func hostPortsChain(network, bridge string) string {
	sum := sha256.Sum256([]byte(network + "/" + bridge))
	return hostPortsChainPrefix + strings.ToUpper(hex.EncodeToString(sum[:8]))
}

// hostPortsComment is the comment on the rules of a network on a bridge.
func hostPortsComment(network, bridge string) string {
	return fmt.Sprintf("agentd network %q bridge %q: pods may not reach these host ports", network, bridge)
}

// jumpSpec is the INPUT rule that sends the bridge's packets to the chain.
func (g hostGuard) jumpSpec() []string {
	return []string{"-i", g.bridge, "-m", "comment", "--comment", g.comment, "-j", g.chain}
}

// rejectSpecs are the chain's rules for ports (sorted, without duplicates):
// one per multiportMax ports, so one for the ports agentd has.
func (g hostGuard) rejectSpecs(ports []uint16) [][]string {
	var specs [][]string
	for chunk := range slices.Chunk(ports, multiportMax) {
		list := make([]string, len(chunk))
		for i, p := range chunk {
			list[i] = strconv.Itoa(int(p))
		}
		specs = append(specs, []string{"-p", "tcp", "-m", "multiport", "--dports", strings.Join(list, ","),
			"-m", "comment", "--comment", g.comment, "-j", "REJECT", "--reject-with", "tcp-reset"})
	}
	return specs
}

// hostPortsState is what a filter table holds of one network's protection.
type hostPortsState struct {
	chainExists bool
	jumps       []ruleLine // the INPUT rules that are ours: our comment, or a jump to our chain; in order
	rules       []ruleLine // every rule of our chain: the chain is ours
	otherJumps  []ruleLine // rules outside INPUT that jump to our chain: -X fails while they are there
}

// parseHostPorts reads `iptables -S` of the filter table. It reads the whole
// table, not `-S INPUT` and `-S <chain>`, to learn in one snapshot whether the
// chain exists without interpreting iptables' error for a missing chain.
func (g hostGuard) parseHostPorts(out string) hostPortsState {
	var st hostPortsState
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" && f[1] == g.chain {
			st.chainExists = true
		}
	}
	for _, r := range parseRuleLines(out) {
		switch {
		case r.chain == g.chain:
			st.rules = append(st.rules, r)
		case r.chain == "INPUT" && (r.comment() == g.comment || r.target() == g.chain):
			st.jumps = append(st.jumps, r)
		case r.target() == g.chain:
			st.otherJumps = append(st.otherJumps, r)
		}
	}
	return st
}

// plan returns the iptables commands (without -w) that turn st into the
// protection of ports (sorted, without duplicates; none: no chain, no jump).
// Rules come in before the ones they replace go, so the ports that stay
// protected stay so throughout. A jump that exists already is left where it
// is: moving it to the top would take either a moment without it or a delete
// by rule number, which races with other programs' changes to INPUT.
func (g hostGuard) plan(st hostPortsState, ports []uint16) [][]string {
	var ops [][]string
	if len(ports) == 0 {
		for _, r := range st.jumps {
			ops = append(ops, append([]string{"-D", "INPUT"}, r.spec...))
		}
		if st.chainExists {
			ops = append(ops, []string{"-F", g.chain}, []string{"-X", g.chain})
		}
		return ops
	}
	if !st.chainExists {
		ops = append(ops, []string{"-N", g.chain})
	}
	add, del := reconcileRules(st.rules, g.rejectSpecs(ports))
	for _, spec := range add {
		ops = append(ops, append([]string{"-A", g.chain}, spec...))
	}
	for _, spec := range del {
		ops = append(ops, append([]string{"-D", g.chain}, spec...))
	}
	add, del = reconcileRules(st.jumps, [][]string{g.jumpSpec()})
	for _, spec := range add {
		ops = append(ops, append([]string{"-I", "INPUT", "1"}, spec...))
	}
	for _, spec := range del {
		ops = append(ops, append([]string{"-D", "INPUT"}, spec...))
	}
	return ops
}

// reconcileRules compares the rules a chain has with the specs it should
// have: add are the specs it lacks, del the rules it should not have,
// duplicates of wanted ones included (deleting by spec removes one of equal
// rules, whichever).
func reconcileRules(have []ruleLine, want [][]string) (add, del [][]string) {
	missing := slices.Clone(want)
	for _, r := range have {
		i := slices.IndexFunc(missing, func(w []string) bool { return slices.Equal(w, r.spec) })
		if i < 0 {
			del = append(del, r.spec)
			continue
		}
		missing = slices.Delete(missing, i, i+1)
	}
	return missing, del
}

// protected returns the ports st rejects, sorted: those in the chain's REJECT
// rules, when a jump from INPUT for the bridge leads to them.
func (g hostGuard) protected(st hostPortsState) []uint16 {
	if !slices.ContainsFunc(st.jumps, func(r ruleLine) bool { return slices.Equal(r.spec, g.jumpSpec()) }) {
		return nil
	}
	var ports []uint16
	for _, r := range st.rules {
		if r.target() != "REJECT" || r.option("-p") != "tcp" || r.comment() != g.comment {
			continue
		}
		ps, err := parsePortList(r.option("--dports"))
		if err != nil {
			continue
		}
		ports = append(ports, ps...)
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// parsePortList reads a multiport list as iptables prints it: "2379,2380".
// Ranges ("a:b") are not written by agentd and are refused.
func parsePortList(s string) ([]uint16, error) {
	var ports []uint16
	for _, f := range strings.Split(s, ",") {
		p, err := strconv.ParseUint(f, 10, 16)
		if err != nil || p == 0 {
			return nil, fmt.Errorf("port list %q: %q is not a port", s, f)
		}
		ports = append(ports, uint16(p))
	}
	return ports, nil
}

// normalizePorts sorts ports and drops duplicates; port 0 is an error.
func normalizePorts(ports []uint16) ([]uint16, error) {
	out := slices.Clone(ports)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > 0 && out[0] == 0 {
		return nil, errors.New("port 0 cannot be protected: it is not a port a server listens on")
	}
	return out, nil
}

// ProtectHostPorts makes sure that TCP connections from the pod bridge to the
// given ports of this host, whichever of its addresses they aim at, are
// refused with a reset, in the filter table of every address family the host
// has (see the comment at the top of hostports.go). It replaces the set of
// ports an earlier call (of this or an earlier agentd on the same bridge)
// installed, so it is idempotent and follows port changes; no ports removes
// the protection, chain and jump included. It reads what the kernel has on
// each call, so it also repairs or removes what an agentd killed half-way
// left. It needs iptables (and ip6tables when the kernel has IPv6) to
// protect; to remove, a missing command means nothing to remove.
//
// It does not need the bridge to exist: the rules match its name. Calls are
// serialized; an error names the family and command that failed, and the
// other family is still handled.
func (n *Network) ProtectHostPorts(ctx context.Context, requested []uint16) error {
	ports, err := normalizePorts(requested)
	if err != nil {
		return fmt.Errorf("network: protect host ports %v on bridge %s: %w", requested, n.cfg.Bridge, err)
	}
	n.hostPortsMu.Lock()
	defer n.hostPortsMu.Unlock()
	n.protectedPorts = ports // reserved from pods' host ports from now on, whatever the rules say
	g := newHostGuard(n.cfg.Bridge)
	var errs []error
	for _, fam := range hostFamilies() {
		if _, err := exec.LookPath(fam.cmd); err != nil {
			if len(ports) == 0 {
				continue // without the command, nobody put rules there through it
			}
			errs = append(errs, fmt.Errorf("network: protect host ports %v from pods on bridge %s (%s): %w; install it with `apt-get install iptables` (or run hack/install-deps.sh)",
				ports, n.cfg.Bridge, fam.name, err))
			continue
		}
		changes, err := n.protectHostPorts(ctx, g, fam, ports)
		if err != nil {
			errs = append(errs, fmt.Errorf("network: protect host ports %v from pods on bridge %s (%s): %w", ports, n.cfg.Bridge, fam.name, err))
			continue
		}
		if changes > 0 {
			n.log.Info("Changed which host ports pods may not reach", "bridge", n.cfg.Bridge, "family", fam.name,
				"ports", ports, "chain", g.chain, "changes", changes)
		}
	}
	return errors.Join(errs...)
}

// protectHostPorts plans and applies the protection in one family and
// returns how many commands it ran.
func (n *Network) protectHostPorts(ctx context.Context, g hostGuard, fam ipFamily, ports []uint16) (int, error) {
	out, err := xtablesOutput(ctx, fam.cmd, "-t", "filter", "-S")
	if err != nil {
		return 0, fmt.Errorf("list the filter table: %w", err)
	}
	st := g.parseHostPorts(out)
	ops := g.plan(st, ports)
	for i, op := range ops {
		if _, err := xtablesOutput(ctx, fam.cmd, append([]string{"-t", "filter"}, op...)...); err != nil {
			if op[0] == "-X" && len(st.otherJumps) > 0 {
				r := st.otherJumps[0]
				err = fmt.Errorf("%w; a rule outside INPUT still jumps to it: remove it (%s -D %s %s), then retry",
					err, fam.cmd, r.chain, strings.Join(r.spec, " "))
			}
			return i, err
		}
	}
	return len(ops), nil
}

// HostPortsProtected returns the ports ProtectHostPorts protects now, sorted:
// those refused in every address family the host has, as the kernel's rules
// say. A chain without its jump protects nothing and counts for none.
func (n *Network) HostPortsProtected(ctx context.Context) ([]uint16, error) {
	g := newHostGuard(n.cfg.Bridge)
	var ports []uint16
	for i, fam := range hostFamilies() {
		if _, err := exec.LookPath(fam.cmd); err != nil {
			return nil, nil // no command, no rules
		}
		out, err := xtablesOutput(ctx, fam.cmd, "-t", "filter", "-S")
		if err != nil {
			return nil, fmt.Errorf("network: host ports protected on bridge %s (%s): list the filter table: %w", n.cfg.Bridge, fam.name, err)
		}
		got := g.protected(g.parseHostPorts(out))
		if i == 0 {
			ports = got
			continue
		}
		ports = slices.DeleteFunc(ports, func(p uint16) bool { return !slices.Contains(got, p) })
	}
	return ports, nil
}
