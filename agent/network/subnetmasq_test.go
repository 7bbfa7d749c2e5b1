package network

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestSubnetMasqNames(t *testing.T) {
	// The names are what a newer agentd finds an older one's rules by: pinned.
	if c := subnetMasqChain("agentd", "agent0"); c != "AGENTD-MASQ-2D12D6D7B9ACA072" {
		t.Errorf("subnetMasqChain(agentd, agent0) = %s: changing it strands an older agentd's rules", c)
	}
	if c := subnetMasqChain("agentd", "a-bridge-name15"); len(c) != 28 {
		t.Errorf("subnetMasqChain = %q, want 28 characters, iptables' limit", c)
	}
	if subnetMasqChain("agentd", "agent0") == subnetMasqChain("agentd", "agent1") {
		t.Error("two bridges share a chain")
	}
	c := subnetMasqComment("agentd", "agent0", netip.MustParsePrefix("10.77.0.0/16"))
	if c != `agentd network "agentd" bridge "agent0" subnet 10.77.0.0/16: masquerade traffic from pods leaving the subnet` {
		t.Errorf("subnetMasqComment = %q", c)
	}
	// Collect must not take it for a pod's rule of the bridge plugin.
	if _, _, ok := parseMasqComment(c); ok {
		t.Error("parseMasqComment reads agentd's subnet comment as a pod's")
	}
}

// subnetMasqListing is a nat table as iptables 1.8.9 (nf_tables) prints it with
// agentd's masquerading for two bridges, a pod's chain of the bridge plugin
// (an older agentd's) and someone else's rules.
func subnetMasqListing(m, other subnetMasq) string {
	var b strings.Builder
	b.WriteString(`-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N CNI-bdff72f63326faf018464c6f
-N DOCKER
`)
	fmt.Fprintf(&b, "-N %s\n-N %s\n", m.chain, other.chain)
	line := func(chain string, spec []string) {
		args := make([]string, len(spec))
		for i, a := range spec {
			args[i] = quoteRuleArg(a)
		}
		fmt.Fprintf(&b, "-A %s %s\n", chain, strings.Join(args, " "))
	}
	b.WriteString(`-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 10.77.0.2/32 -m comment --comment "name: \"agentd\" id: \"0f8c2a8e-3b1d-4d6e-9c47-2b1f5e0a7d13\"" -j CNI-bdff72f63326faf018464c6f
`)
	line("POSTROUTING", m.jumpSpec())
	line("POSTROUTING", other.jumpSpec())
	b.WriteString(`-A CNI-bdff72f63326faf018464c6f -d 10.77.0.0/16 -m comment --comment "name: \"agentd\" id: \"0f8c2a8e-3b1d-4d6e-9c47-2b1f5e0a7d13\"" -j ACCEPT
-A CNI-bdff72f63326faf018464c6f ! -d 224.0.0.0/4 -m comment --comment "name: \"agentd\" id: \"0f8c2a8e-3b1d-4d6e-9c47-2b1f5e0a7d13\"" -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
`)
	for _, s := range m.ruleSpecs() {
		line(m.chain, s)
	}
	for _, s := range other.ruleSpecs() {
		line(other.chain, s)
	}
	return b.String()
}

func TestParseSubnetMasq(t *testing.T) {
	m := newSubnetMasq("agent0", netip.MustParsePrefix("10.77.0.0/16"))
	other := newSubnetMasq("agent1", netip.MustParsePrefix("10.78.0.0/16"))
	st := m.parse(subnetMasqListing(m, other))
	if !st.chainExists || !reflect.DeepEqual(st.jumps, []ruleLine{{"POSTROUTING", m.jumpSpec()}}) || len(st.rules) != 3 || st.otherJumps != nil {
		t.Errorf("parse: %+v", st)
	}
	if !m.masquerading(st) || m.plan(st, true) != nil {
		t.Errorf("installed masquerading not recognised: plans %q", m.plan(st, true))
	}
	// The spec of the jump round-trips through iptables' quoting.
	if got := st.jumps[0].spec; !reflect.DeepEqual(got, []string{"-s", "10.77.0.0/16", "-m", "comment", "--comment", m.comment, "-j", m.chain}) {
		t.Errorf("jump %q", got)
	}
}

func TestPlanSubnetMasq(t *testing.T) {
	a, b := netip.MustParsePrefix("10.77.0.0/16"), netip.MustParsePrefix("10.99.8.0/24")
	m := newSubnetMasq("agent0", a)
	other := newSubnetMasq("agent1", netip.MustParsePrefix("10.78.0.0/16"))
	empty := "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n"
	c := m.comment
	for _, tc := range []struct {
		name    string
		listing string
		m       subnetMasq
		on      bool
		want    [][]string
	}{
		{"fresh", empty, m, true, [][]string{
			{"-N", m.chain},
			{"-A", m.chain, "-d", "10.77.0.0/16", "-m", "comment", "--comment", c, "-j", "RETURN"},
			{"-A", m.chain, "-d", "224.0.0.0/4", "-m", "comment", "--comment", c, "-j", "RETURN"},
			{"-A", m.chain, "-m", "comment", "--comment", c, "-j", "MASQUERADE"},
			{"-A", "POSTROUTING", "-s", "10.77.0.0/16", "-m", "comment", "--comment", c, "-j", m.chain},
		}},
		{"installed", subnetMasqListing(m, other), m, true, nil},
		{"off, none", empty, m, false, nil},
		{"off", subnetMasqListing(m, other), m, false, [][]string{
			append([]string{"-D", "POSTROUTING"}, m.jumpSpec()...),
			{"-F", m.chain}, {"-X", m.chain},
		}},
		{"subnet changed", subnetMasqListing(m, other), newSubnetMasq("agent0", b), true, func() [][]string {
			mb := newSubnetMasq("agent0", b)
			ops := [][]string{{"-F", m.chain}}
			for _, s := range mb.ruleSpecs() {
				ops = append(ops, append([]string{"-A", m.chain}, s...))
			}
			return append(ops, append([]string{"-A", "POSTROUTING"}, mb.jumpSpec()...),
				append([]string{"-D", "POSTROUTING"}, m.jumpSpec()...))
		}()},
	} {
		got := tc.m.plan(tc.m.parse(tc.listing), tc.on)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

func TestPlanSubnetMasqConverges(t *testing.T) {
	other := newSubnetMasq("agent1", netip.MustParsePrefix("10.78.0.0/16"))
	configs := []struct {
		subnet string
		on     bool
	}{{"10.77.0.0/16", false}, {"10.77.0.0/16", true}, {"10.99.8.0/24", true}}
	for _, from := range configs {
		for _, to := range configs {
			mFrom := newSubnetMasq("agent0", netip.MustParsePrefix(from.subnet))
			mTo := newSubnetMasq("agent0", netip.MustParsePrefix(to.subnet))
			start := newFakeTable(t, subnetMasqListing(mFrom, other))
			start.apply(t, mFrom.plan(mFrom.parse(start.save()), from.on))
			// A wrong order, as a hand edit might leave it, is repaired too.
			steps := mTo.plan(mTo.parse(start.save()), to.on)
			for k := 0; k <= len(steps); k++ {
				tab := start.clone()
				tab.apply(t, steps[:k]) // an agentd killed after k commands
				tab.apply(t, mTo.plan(mTo.parse(tab.save()), to.on))
				name := fmt.Sprintf("%+v -> %+v killed after %d of %d", from, to, k, len(steps))
				st := mTo.parse(tab.save())
				if again := mTo.plan(st, to.on); again != nil {
					t.Errorf("%s: not converged, plans %q", name, again)
				}
				if to.on != mTo.masquerading(st) {
					t.Errorf("%s: masquerading %v", name, !to.on)
				}
				if !to.on && (st.chainExists || st.jumps != nil) {
					t.Errorf("%s: left %+v", name, st)
				}
				if !other.masquerading(other.parse(tab.save())) {
					t.Errorf("%s: agent1's masquerading changed", name)
				}
				for _, keep := range []string{`-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE`, `-N CNI-bdff72f63326faf018464c6f`, `-A DOCKER -i docker0 -j RETURN`} {
					if !strings.Contains(tab.save(), keep+"\n") {
						t.Errorf("%s: %q is gone", name, keep)
					}
				}
			}
		}
	}
}

func TestPlanSubnetMasqRepairsOrder(t *testing.T) {
	m := newSubnetMasq("agent0", netip.MustParsePrefix("10.77.0.0/16"))
	tab := newFakeTable(t, "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n")
	specs := m.ruleSpecs()
	tab.apply(t, [][]string{{"-N", m.chain}, append([]string{"-A", m.chain}, specs[2]...), append([]string{"-A", m.chain}, specs[0]...),
		append([]string{"-A", "POSTROUTING"}, m.jumpSpec()...), append([]string{"-A", "POSTROUTING"}, m.jumpSpec()...)})
	tab.apply(t, m.plan(m.parse(tab.save()), true))
	st := m.parse(tab.save())
	if !m.masquerading(st) || len(st.jumps) != 1 {
		t.Errorf("not repaired: %+v\n%s", st, tab.save())
	}
}
