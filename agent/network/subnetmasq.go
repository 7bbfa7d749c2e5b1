package network

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
)

// Masquerading is agentd's, not the bridge plugin's: the plugin (ipMasq: true)
// gives every pod a chain of its own, about nine iptables runs per ADD and more
// per DEL, most of a pod start's time. Instead each network (one per bridge)
// owns one chain in the nat table, installed once when agentd starts, jumped
// to from POSTROUTING for the whole subnet's sources:
//
//	-A POSTROUTING -s 10.77.0.0/16 -m comment --comment "agentd network \"agentd\" bridge \"agent0\" subnet 10.77.0.0/16: masquerade traffic from pods leaving the subnet" -j AGENTD-MASQ-<hash>
//	-A AGENTD-MASQ-<hash> -d 10.77.0.0/16 -m comment --comment "<the same>" -j RETURN
//	-A AGENTD-MASQ-<hash> -d 224.0.0.0/4 -m comment --comment "<the same>" -j RETURN
//	-A AGENTD-MASQ-<hash> -m comment --comment "<the same>" -j MASQUERADE
//
// which is what the plugin's per-pod rules did: traffic from a pod to a
// destination outside the subnet that is not multicast is masqueraded,
// pod-to-pod traffic is not. The chain's name is a hash of the network and the
// bridge, so a changed subnet replaces the rules in the same chain; the
// comment names the subnet too. As for the host port protection
// (hostports.go), everything is read back from the kernel on each call.
//
// The rules outlive agentd, as the bridge and the pods do (live restore); a
// configuration without masquerading removes them. Pods an older agentd
// attached still have the plugin's chains: teardown removes those (masq.go).

// masqChainPrefix starts the name of a network's masquerading chain.
const masqChainPrefix = "AGENTD-MASQ-"

// multicastNet is not masqueraded, as the bridge plugin did not.
const multicastNet = "224.0.0.0/4"

// subnetMasq names one network's masquerading. Its methods are pure.
type subnetMasq struct {
	subnet  netip.Prefix
	chain   string // AGENTD-MASQ-<hash>
	comment string // on every rule, jump included
}

// newSubnetMasq names the masquerading of the network on bridge for subnet.
func newSubnetMasq(bridge string, subnet netip.Prefix) subnetMasq {
	return subnetMasq{subnet: subnet, chain: subnetMasqChain(networkName, bridge), comment: subnetMasqComment(networkName, bridge, subnet)}
}

// subnetMasqChain names the chain of a network on a bridge: 12 + 16 = 28
// characters, the most iptables takes.
func subnetMasqChain(network, bridge string) string {
	sum := sha256.Sum256([]byte(network + "/" + bridge))
	return masqChainPrefix + strings.ToUpper(hex.EncodeToString(sum[:8]))
}

// subnetMasqComment is the comment on the rules of a network on a bridge.
func subnetMasqComment(network, bridge string, subnet netip.Prefix) string {
	return fmt.Sprintf("agentd network %q bridge %q subnet %s: masquerade traffic from pods leaving the subnet", network, bridge, subnet)
}

// jumpSpec is the POSTROUTING rule that sends the subnet's packets to the chain.
func (m subnetMasq) jumpSpec() []string {
	return []string{"-s", m.subnet.String(), "-m", "comment", "--comment", m.comment, "-j", m.chain}
}

// ruleSpecs are the chain's rules, in order.
func (m subnetMasq) ruleSpecs() [][]string {
	return [][]string{
		{"-d", m.subnet.String(), "-m", "comment", "--comment", m.comment, "-j", "RETURN"},
		{"-d", multicastNet, "-m", "comment", "--comment", m.comment, "-j", "RETURN"},
		{"-m", "comment", "--comment", m.comment, "-j", "MASQUERADE"},
	}
}

// subnetMasqState is what the nat table holds of one network's masquerading.
type subnetMasqState struct {
	chainExists bool
	jumps       []ruleLine // the POSTROUTING rules that jump to our chain, in order
	rules       []ruleLine // every rule of our chain, in order
	otherJumps  []ruleLine // rules outside POSTROUTING that jump to our chain: -X fails while they are there
}

// parse reads `iptables -t nat -S`, the whole table in one snapshot.
func (m subnetMasq) parse(out string) subnetMasqState {
	var st subnetMasqState
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" && f[1] == m.chain {
			st.chainExists = true
		}
	}
	for _, r := range parseRuleLines(out) {
		switch {
		case r.chain == m.chain:
			st.rules = append(st.rules, r)
		case r.chain == "POSTROUTING" && (r.comment() == m.comment || r.target() == m.chain):
			st.jumps = append(st.jumps, r)
		case r.target() == m.chain:
			st.otherJumps = append(st.otherJumps, r)
		}
	}
	return st
}

// plan returns the iptables commands (without -w and -t nat) that turn st
// into the masquerading (on) or into none. The chain's rules are an ordered
// list (the RETURNs must come before MASQUERADE): when they differ from the
// wanted ones in any way the chain is flushed and filled again, which for a
// moment — only after a change of subnet or a repair — lets new connections
// leave unmasqueraded. The jump comes after the chain is complete, and the
// old jump (another subnet's) goes after the new one is in.
func (m subnetMasq) plan(st subnetMasqState, on bool) [][]string {
	var ops [][]string
	if !on {
		for _, r := range st.jumps {
			ops = append(ops, append([]string{"-D", "POSTROUTING"}, r.spec...))
		}
		if st.chainExists {
			ops = append(ops, []string{"-F", m.chain}, []string{"-X", m.chain})
		}
		return ops
	}
	if !st.chainExists {
		ops = append(ops, []string{"-N", m.chain})
	}
	want := m.ruleSpecs()
	same := len(st.rules) == len(want)
	for i := 0; same && i < len(want); i++ {
		same = slices.Equal(st.rules[i].spec, want[i])
	}
	if !same {
		if len(st.rules) > 0 {
			ops = append(ops, []string{"-F", m.chain})
		}
		for _, spec := range want {
			ops = append(ops, append([]string{"-A", m.chain}, spec...))
		}
	}
	add, del := reconcileRules(st.jumps, [][]string{m.jumpSpec()})
	for _, spec := range add {
		ops = append(ops, append([]string{"-A", "POSTROUTING"}, spec...))
	}
	for _, spec := range del {
		ops = append(ops, append([]string{"-D", "POSTROUTING"}, spec...))
	}
	return ops
}

// masquerading says whether st masquerades the subnet as m wants.
func (m subnetMasq) masquerading(st subnetMasqState) bool {
	return len(m.plan(st, true)) == 0
}

// SetupMasquerade installs the network's masquerading — traffic from the pod
// subnet to anywhere outside it but multicast leaves with the node's address —
// or, when Config.IPMasq is off, removes what an earlier agentd installed (see
// the comment at the top of subnetmasq.go). It reads what the kernel has, so
// it is idempotent, follows a changed subnet and repairs what an agentd killed
// half-way left. agentd calls it at start; a Setup before that calls it once
// itself, so that no pod starts without. Pods' ADD and DEL then run no
// iptables for masquerading.
func (n *Network) SetupMasquerade(ctx context.Context) error {
	n.masqMu.Lock()
	defer n.masqMu.Unlock()
	return n.setupMasquerade(ctx)
}

// ensureMasquerade runs SetupMasquerade unless it succeeded already in this
// process; a Setup calls it.
func (n *Network) ensureMasquerade(ctx context.Context) error {
	if !n.ownMasq() {
		return nil
	}
	n.masqMu.Lock()
	defer n.masqMu.Unlock()
	if n.masqDone {
		return nil
	}
	return n.setupMasquerade(ctx)
}

// ownMasq says whether agentd's subnet-wide rules masquerade, rather than
// nothing or (legacyPluginMasq) the bridge plugin's per-pod rules.
func (n *Network) ownMasq() bool { return n.cfg.IPMasq && !n.cfg.legacyPluginMasq }

// setupMasquerade is SetupMasquerade; the caller holds masqMu.
func (n *Network) setupMasquerade(ctx context.Context) error {
	on := n.ownMasq()
	if _, err := exec.LookPath("iptables"); err != nil {
		if !on {
			return nil // without the command, nobody put rules there through it
		}
		return fmt.Errorf("network: masquerade pod subnet %s on bridge %s: %w; install it with `apt-get install iptables` (or run hack/install-deps.sh)",
			n.subnet, n.cfg.Bridge, err)
	}
	m := newSubnetMasq(n.cfg.Bridge, n.subnet)
	out, err := iptablesOutput(ctx, "-t", "nat", "-S")
	if err != nil {
		return fmt.Errorf("network: masquerade pod subnet %s on bridge %s: list the nat table: %w", n.subnet, n.cfg.Bridge, err)
	}
	st := m.parse(out)
	ops := m.plan(st, on)
	for _, op := range ops {
		if err := iptables(ctx, append([]string{"-t", "nat"}, op...)...); err != nil {
			if op[0] == "-X" && len(st.otherJumps) > 0 {
				r := st.otherJumps[0]
				err = fmt.Errorf("%w; a rule outside POSTROUTING still jumps to it: remove it (iptables -t nat -D %s %s), then retry",
					err, r.chain, strings.Join(r.spec, " "))
			}
			return fmt.Errorf("network: masquerade pod subnet %s on bridge %s: %w", n.subnet, n.cfg.Bridge, err)
		}
	}
	if len(ops) > 0 {
		n.log.Info("Changed the pod subnet's masquerading", "bridge", n.cfg.Bridge, "subnet", n.subnet.String(),
			"on", on, "chain", m.chain, "changes", len(ops))
	}
	n.masqDone = true
	return nil
}
