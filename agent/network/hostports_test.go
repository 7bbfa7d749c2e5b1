package network

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestHostPortsNames(t *testing.T) {
	// The names are what a newer agentd finds an older one's rules by: pinned.
	if c := hostPortsChain("agentd", "agent0"); c != "AGENTD-HOST-2D12D6D7B9ACA072" {
		t.Errorf("hostPortsChain(agentd, agent0) = %s: changing it strands an older agentd's rules", c)
	}
	if c := hostPortsChain("agentd", "a-bridge-name15"); len(c) != 28 {
		t.Errorf("hostPortsChain = %q, want 28 characters, iptables' limit", c)
	}
	if hostPortsChain("agentd", "agent0") == hostPortsChain("agentd", "agent1") {
		t.Error("two bridges share a chain")
	}
	if c := hostPortsComment("agentd", "agent0"); c != `agentd network "agentd" bridge "agent0": pods may not reach these host ports` {
		t.Errorf("hostPortsComment = %q", c)
	}
}

// hostListing is the filter table as iptables 1.8.9 (nf_tables) prints it
// with agentd's rules for two bridges and someone else's.
func hostListing(g, other hostGuard) string {
	return fmt.Sprintf(`-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N %[1]s
-N %[3]s
-N DOCKER-USER
-A INPUT -i %[5]s -m comment --comment %[2]s -j %[1]s
-A INPUT -i %[6]s -m comment --comment %[4]s -j %[3]s
-A INPUT -i lo -j ACCEPT
-A INPUT -i eth0 -m comment --comment "keep me" -j ACCEPT
-A INPUT -i %[5]s -m comment --comment %[2]s -j %[1]s
-A INPUT -i stale0 -j %[1]s
-A FORWARD -j DOCKER-USER
-A %[1]s -p tcp -m multiport --dports 2379,2380,7946 -m comment --comment %[2]s -j REJECT --reject-with tcp-reset
-A %[3]s -p tcp -m multiport --dports 2379 -m comment --comment %[4]s -j REJECT --reject-with tcp-reset
-A DOCKER-USER -j RETURN
`, g.chain, quoteRuleArg(g.comment), other.chain, quoteRuleArg(other.comment), g.bridge, other.bridge)
}

func TestParseHostPorts(t *testing.T) {
	g, other := newHostGuard("agent0"), newHostGuard("agent1")
	st := g.parseHostPorts(hostListing(g, other))
	if !st.chainExists {
		t.Error("chain not found")
	}
	jump := g.jumpSpec()
	want := []ruleLine{{"INPUT", jump}, {"INPUT", jump}, {"INPUT", []string{"-i", "stale0", "-j", g.chain}}}
	if !reflect.DeepEqual(st.jumps, want) {
		t.Errorf("jumps:\n got %q\nwant %q (ours by comment, or by target; not agent1's)", st.jumps, want)
	}
	if wantRules := []ruleLine{{g.chain, g.rejectSpecs([]uint16{2379, 2380, 7946})[0]}}; !reflect.DeepEqual(st.rules, wantRules) {
		t.Errorf("rules:\n got %q\nwant %q", st.rules, wantRules)
	}
	if got := g.protected(st); !reflect.DeepEqual(got, []uint16{2379, 2380, 7946}) {
		t.Errorf("protected = %v", got)
	}
	if got := other.protected(other.parseHostPorts(hostListing(g, other))); !reflect.DeepEqual(got, []uint16{2379}) {
		t.Errorf("agent1 protected = %v", got)
	}
	if st := newHostGuard("agent9").parseHostPorts(hostListing(g, other)); st.chainExists || st.jumps != nil || st.rules != nil {
		t.Errorf("a bridge without rules found %+v", st)
	}
	// A rule outside INPUT that jumps to the chain is found: -X fails while it is there.
	st = g.parseHostPorts("-N " + g.chain + "\n-A FORWARD -j " + g.chain + "\n")
	if want := []ruleLine{{"FORWARD", []string{"-j", g.chain}}}; !reflect.DeepEqual(st.otherJumps, want) {
		t.Errorf("otherJumps = %q, want %q", st.otherJumps, want)
	}
}

func TestHostPortsProtected(t *testing.T) {
	g := newHostGuard("agent0")
	reject := g.rejectSpecs([]uint16{2379, 2380})[0]
	for _, tc := range []struct {
		name string
		st   hostPortsState
		want []uint16
	}{
		{"nothing", hostPortsState{}, nil},
		{"chain without jump protects nothing", hostPortsState{chainExists: true, rules: []ruleLine{{g.chain, reject}}}, nil},
		{"jump and rule", hostPortsState{chainExists: true, jumps: []ruleLine{{"INPUT", g.jumpSpec()}}, rules: []ruleLine{{g.chain, reject}}}, []uint16{2379, 2380}},
		{"a jump for another interface is not ours", hostPortsState{chainExists: true,
			jumps: []ruleLine{{"INPUT", []string{"-i", "eth0", "-j", g.chain}}}, rules: []ruleLine{{g.chain, reject}}}, nil},
		{"rules that do not reject with our comment do not count", hostPortsState{chainExists: true,
			jumps: []ruleLine{{"INPUT", g.jumpSpec()}},
			rules: []ruleLine{
				{g.chain, []string{"-p", "tcp", "-m", "multiport", "--dports", "22", "-j", "ACCEPT"}},
				{g.chain, []string{"-p", "tcp", "-m", "multiport", "--dports", "23", "-j", "REJECT"}},
				{g.chain, []string{"-p", "udp", "-m", "multiport", "--dports", "24", "-m", "comment", "--comment", g.comment, "-j", "REJECT"}},
				{g.chain, []string{"-p", "tcp", "-m", "multiport", "--dports", "25:27", "-m", "comment", "--comment", g.comment, "-j", "REJECT"}},
				{g.chain, []string{"-p", "tcp", "-m", "multiport", "--dports", "80", "-m", "comment", "--comment", g.comment, "-j", "REJECT"}},
			}}, []uint16{80}},
	} {
		if got := g.protected(tc.st); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: protected = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPlanHostPorts(t *testing.T) {
	g := newHostGuard("agent0")
	c := g.chain
	jump := g.jumpSpec()
	rule := func(ports ...uint16) []string { return g.rejectSpecs(ports)[0] }
	ops := func(op ...string) []string { return op }
	with := func(prefix []string, spec []string) []string { return append(slices.Clone(prefix), spec...) }
	full := hostPortsState{chainExists: true, jumps: []ruleLine{{"INPUT", jump}}, rules: []ruleLine{{c, rule(2379, 2380)}}}
	for _, tc := range []struct {
		name  string
		st    hostPortsState
		ports []uint16
		want  [][]string
	}{
		{"first protection", hostPortsState{}, []uint16{2379, 2380},
			[][]string{ops("-N", c), with(ops("-A", c), rule(2379, 2380)), with(ops("-I", "INPUT", "1"), jump)}},
		{"in place: nothing to do", full, []uint16{2379, 2380}, nil},
		{"new ports come in before the old go", full, []uint16{2379, 2381},
			[][]string{with(ops("-A", c), rule(2379, 2381)), with(ops("-D", c), rule(2379, 2380))}},
		{"killed after -N", hostPortsState{chainExists: true}, []uint16{2379},
			[][]string{with(ops("-A", c), rule(2379)), with(ops("-I", "INPUT", "1"), jump)}},
		{"killed before the jump", hostPortsState{chainExists: true, rules: []ruleLine{{c, rule(2379)}}}, []uint16{2379},
			[][]string{with(ops("-I", "INPUT", "1"), jump)}},
		{"killed between -A and -D", hostPortsState{chainExists: true, jumps: full.jumps,
			rules: []ruleLine{{c, rule(1)}, {c, rule(2379)}, {c, rule(2379)}, {c, ops("-j", "ACCEPT")}}}, []uint16{2379},
			[][]string{with(ops("-D", c), rule(1)), with(ops("-D", c), rule(2379)), with(ops("-D", c), ops("-j", "ACCEPT"))}},
		{"duplicate and stale jumps go", hostPortsState{chainExists: true,
			jumps: []ruleLine{{"INPUT", []string{"-i", "old0", "-j", c}}, {"INPUT", jump}, {"INPUT", jump}}, rules: full.rules}, []uint16{2379, 2380},
			[][]string{ops("-D", "INPUT", "-i", "old0", "-j", c), with(ops("-D", "INPUT"), jump)}},
		{"sixteen ports take two rules", hostPortsState{}, []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
			[][]string{ops("-N", c), with(ops("-A", c), rule(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)), with(ops("-A", c), rule(16)),
				with(ops("-I", "INPUT", "1"), jump)}},
		{"removed", full, nil, [][]string{with(ops("-D", "INPUT"), jump), ops("-F", c), ops("-X", c)}},
		{"nothing to remove", hostPortsState{}, nil, nil},
		{"killed after removing the jump", hostPortsState{chainExists: true, rules: full.rules}, nil, [][]string{ops("-F", c), ops("-X", c)}},
	} {
		if got := g.plan(tc.st, tc.ports); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestPlanHostPortsConverges applies plans to a fake filter table, from
// states an agentd killed at any command of an earlier plan leaves, and
// checks that one plan gets to the ports asked for, that the ports both sets
// have stay protected at every step, and that another bridge's rules and
// other rules stay as they were.
func TestPlanHostPortsConverges(t *testing.T) {
	g, other := newHostGuard("agent0"), newHostGuard("agent1")
	sets := [][]uint16{nil, {2379}, {2379, 2380, 7946}, {2380, 7946, 9000}}
	for _, from := range sets {
		for _, to := range sets {
			start := newFakeTable(t, hostListing(g, other))
			start.apply(t, g.plan(g.parseHostPorts(start.save()), nil))
			start.apply(t, g.plan(g.parseHostPorts(start.save()), from))
			// An agentd killed after k commands of the plan towards to.
			steps := g.plan(g.parseHostPorts(start.save()), to)
			for k := 0; k <= len(steps); k++ {
				tab := start.clone()
				tab.apply(t, steps[:k])
				plan := g.plan(g.parseHostPorts(tab.save()), to)
				for i := range plan {
					tab.apply(t, plan[i:i+1])
					if k == 0 {
						checkKept(t, g, tab, from, to)
					}
				}
				name := fmt.Sprintf("%v -> %v killed after %d of %d", from, to, k, len(steps))
				st := g.parseHostPorts(tab.save())
				if got := g.protected(st); !slices.Equal(got, to) {
					t.Errorf("%s: protected %v", name, got)
				}
				if again := g.plan(st, to); again != nil {
					t.Errorf("%s: not converged, plans %q", name, again)
				}
				if len(to) == 0 && (st.chainExists || st.jumps != nil) {
					t.Errorf("%s: left %+v", name, st)
				}
				if len(to) > 0 && (len(st.jumps) != 1 || len(st.rules) != 1) {
					t.Errorf("%s: %d jumps, %d rules, want one each", name, len(st.jumps), len(st.rules))
				}
				if got := other.protected(other.parseHostPorts(tab.save())); !slices.Equal(got, []uint16{2379}) {
					t.Errorf("%s: agent1 protects %v", name, got)
				}
				for _, keep := range []string{`-A INPUT -i lo -j ACCEPT`, `-A INPUT -i eth0 -m comment --comment "keep me" -j ACCEPT`, `-A DOCKER-USER -j RETURN`} {
					if !strings.Contains(tab.save(), keep+"\n") {
						t.Errorf("%s: %q is gone", name, keep)
					}
				}
			}
		}
	}
}

// checkKept fails when a port both from and to protect is not protected.
func checkKept(t *testing.T, g hostGuard, tab *fakeTable, from, to []uint16) {
	t.Helper()
	got := g.protected(g.parseHostPorts(tab.save()))
	for _, p := range from {
		if slices.Contains(to, p) && !slices.Contains(got, p) {
			t.Errorf("%v -> %v: port %d unprotected during the change", from, to, p)
		}
	}
}

func TestNormalizePorts(t *testing.T) {
	if got, err := normalizePorts([]uint16{2380, 2379, 2380}); err != nil || !slices.Equal(got, []uint16{2379, 2380}) {
		t.Errorf("normalizePorts = %v, %v", got, err)
	}
	if got, err := normalizePorts(nil); err != nil || len(got) != 0 {
		t.Errorf("normalizePorts(nil) = %v, %v", got, err)
	}
	if _, err := normalizePorts([]uint16{2379, 0}); err == nil {
		t.Error("port 0 accepted")
	}
}

func TestParsePortList(t *testing.T) {
	if got, err := parsePortList("2379,2380,65535"); err != nil || !slices.Equal(got, []uint16{2379, 2380, 65535}) {
		t.Errorf("parsePortList = %v, %v", got, err)
	}
	for _, s := range []string{"", "0", "65536", "1:3", "1,,2", "x"} {
		if got, err := parsePortList(s); err == nil {
			t.Errorf("parsePortList(%q) = %v", s, got)
		}
	}
}

// fakeTable is a table (filter, nat: the listing's -P lines say) that runs the commands plan writes (-N, -A,
// -I <chain> 1, -D by spec, -F, -X) with iptables' rules: -D removes the first
// equal rule, -X refuses a chain with rules or references, a missing chain
// is an error.
type fakeTable struct {
	builtins []string              // the table's built-in chains, from the listing's -P lines
	chains   []string              // user chains, in creation order
	rules    map[string][][]string // by chain, INPUT and the others included
}

func newFakeTable(t *testing.T, listing string) *fakeTable {
	tab := &fakeTable{rules: map[string][][]string{}}
	for _, line := range strings.Split(listing, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "-N" {
			tab.chains = append(tab.chains, f[1])
		} else if len(f) == 3 && f[0] == "-P" && f[2] == "ACCEPT" {
			tab.builtins = append(tab.builtins, f[1])
		}
	}
	for _, r := range parseRuleLines(listing) {
		tab.rules[r.chain] = append(tab.rules[r.chain], r.spec)
	}
	if got := tab.save(); got != listing {
		t.Fatalf("fake table does not round-trip:\n%s\nwant\n%s", got, listing)
	}
	return tab
}

func (tab *fakeTable) clone() *fakeTable {
	c := &fakeTable{builtins: tab.builtins, chains: slices.Clone(tab.chains), rules: map[string][][]string{}}
	for k, v := range tab.rules {
		c.rules[k] = slices.Clone(v)
	}
	return c
}

func (tab *fakeTable) exists(chain string) bool {
	return slices.Contains(tab.builtins, chain) || slices.Contains(tab.chains, chain)
}

func (tab *fakeTable) apply(t *testing.T, ops [][]string) {
	t.Helper()
	for _, op := range ops {
		if err := tab.run(op); err != nil {
			t.Fatalf("iptables %q: %v", op, err)
		}
	}
}

func (tab *fakeTable) run(op []string) error {
	if len(op) < 2 || !(op[0] == "-N" || tab.exists(op[1])) {
		return fmt.Errorf("no chain")
	}
	chain := op[1]
	switch op[0] {
	case "-N":
		if tab.exists(chain) {
			return fmt.Errorf("chain exists")
		}
		tab.chains = append(tab.chains, chain)
	case "-A":
		tab.rules[chain] = append(tab.rules[chain], slices.Clone(op[2:]))
	case "-I":
		if len(op) < 3 || op[2] != "1" {
			return fmt.Errorf("only -I <chain> 1 is faked")
		}
		tab.rules[chain] = slices.Insert(tab.rules[chain], 0, slices.Clone(op[3:]))
	case "-D":
		i := slices.IndexFunc(tab.rules[chain], func(s []string) bool { return slices.Equal(s, op[2:]) })
		if i < 0 {
			return fmt.Errorf("no such rule")
		}
		tab.rules[chain] = slices.Delete(tab.rules[chain], i, i+1)
	case "-F":
		delete(tab.rules, chain)
	case "-X":
		if len(tab.rules[chain]) > 0 {
			return fmt.Errorf("chain not empty")
		}
		for _, rs := range tab.rules {
			for _, r := range rs {
				if (ruleLine{spec: r}).target() == chain {
					return fmt.Errorf("chain referenced")
				}
			}
		}
		tab.chains = slices.DeleteFunc(tab.chains, func(c string) bool { return c == chain })
	default:
		return fmt.Errorf("%s is not faked", op[0])
	}
	return nil
}

// save prints the table as `iptables -S` does.
func (tab *fakeTable) save() string {
	var b strings.Builder
	for _, c := range tab.builtins {
		fmt.Fprintf(&b, "-P %s ACCEPT\n", c)
	}
	for _, c := range tab.chains {
		fmt.Fprintf(&b, "-N %s\n", c)
	}
	for _, c := range append(slices.Clone(tab.builtins), tab.chains...) {
		for _, r := range tab.rules[c] {
			args := make([]string, len(r))
			for i, a := range r {
				args[i] = quoteRuleArg(a)
			}
			fmt.Fprintf(&b, "-A %s %s\n", c, strings.Join(args, " "))
		}
	}
	return b.String()
}

// quoteRuleArg quotes an argument as iptables -S does one with spaces or
// quotes in it (xtables_save_string).
func quoteRuleArg(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\"\\'") {
		return a
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `'`, `\'`)
	return `"` + r.Replace(a) + `"`
}
