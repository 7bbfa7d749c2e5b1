package network

import (
	"net/netip"
	"reflect"
	"testing"
)

// Lines as iptables 1.8.9 (nf_tables) prints them for the bridge plugin 1.1.1.
const natListing = `-P PREROUTING ACCEPT
-P INPUT ACCEPT
-P OUTPUT ACCEPT
-P POSTROUTING ACCEPT
-N CNI-15244026ec6e26f25064a214
-N DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 10.199.250.2/32 -m comment --comment "name: \"agentd\" id: \"exp-uid-1\"" -j CNI-15244026ec6e26f25064a214
-A POSTROUTING -s 10.88.0.5/32 -m comment --comment "name: \"podman\" id: \"0c1d\"" -j CNI-0123456789abcdef01234567
-A POSTROUTING -s 10.1.0.9/32 -m comment --comment "keep me" -j ACCEPT
-A POSTROUTING -s 10.1.0.8/32 -m comment --comment "name: \"agentd\" id: \"x\" extra" -j ACCEPT
-A CNI-15244026ec6e26f25064a214 -d 10.199.250.0/24 -m comment --comment "name: \"agentd\" id: \"exp-uid-1\"" -j ACCEPT
-A CNI-15244026ec6e26f25064a214 ! -d 224.0.0.0/4 -m comment --comment "name: \"agentd\" id: \"exp-uid-1\"" -j MASQUERADE
`

func TestParseNatRules(t *testing.T) {
	got := parseNatRules(natListing)
	comment := `name: "agentd" id: "exp-uid-1"`
	want := []natRule{
		{"POSTROUTING", []string{"-s", "10.199.250.2/32", "-m", "comment", "--comment", comment, "-j", "CNI-15244026ec6e26f25064a214"}, "agentd", "exp-uid-1"},
		{"POSTROUTING", []string{"-s", "10.88.0.5/32", "-m", "comment", "--comment", `name: "podman" id: "0c1d"`, "-j", "CNI-0123456789abcdef01234567"}, "podman", "0c1d"},
		{"CNI-15244026ec6e26f25064a214", []string{"-d", "10.199.250.0/24", "-m", "comment", "--comment", comment, "-j", "ACCEPT"}, "agentd", "exp-uid-1"},
		{"CNI-15244026ec6e26f25064a214", []string{"!", "-d", "224.0.0.0/4", "-m", "comment", "--comment", comment, "-j", "MASQUERADE"}, "agentd", "exp-uid-1"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseNatRules:\n got %q\nwant %q", got, want)
	}
	// Another agentd's rules share our network name; its subnet tells them apart.
	ours, other := netip.MustParsePrefix("10.199.250.0/24"), netip.MustParsePrefix("10.77.0.0/16")
	for i, r := range want {
		wantWithin := i == 0 || i == 2 // the jump for the pod address, the ACCEPT of the subnet
		if got := r.within(ours); got != wantWithin {
			t.Errorf("rule %q within %s = %v", r.spec, ours, got)
		}
		if r.within(other) {
			t.Errorf("rule %q within %s", r.spec, other)
		}
	}
	if (natRule{spec: []string{"!", "-d", "10.199.250.0/24"}}).within(ours) {
		t.Error("a negated match counts as within")
	}
	// The chain the listing shows is the one masqChain computes.
	if c := masqChain("agentd", "exp-uid-1"); c != "CNI-15244026ec6e26f25064a214" {
		t.Errorf("masqChain = %s", c)
	}
}

func TestSplitRuleLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
		err  bool
	}{
		{`-A X -j ACCEPT`, []string{"-A", "X", "-j", "ACCEPT"}, false},
		{`  -A  X  `, []string{"-A", "X"}, false},
		{`--comment "a \"b\" \\ c\'d"`, []string{"--comment", `a "b" \ c'd`}, false},
		{`--comment ""`, []string{"--comment", ""}, false},
		{`--comment "open`, nil, true},
		{`--comment "x\`, nil, true},
	} {
		got, err := splitRuleLine(tc.line)
		if (err != nil) != tc.err || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitRuleLine(%q) = %q, %v; want %q, error %v", tc.line, got, err, tc.want, tc.err)
		}
	}
}

func TestParseMasqComment(t *testing.T) {
	for _, id := range []string{"0f8c2a8e-3b1d-4d6e-9c47-2b1f5e0a7d13", "a", `we"ird`} {
		n, got, ok := parseMasqComment(masqComment("agentd", id))
		if !ok || n != "agentd" || got != id {
			t.Errorf("round trip of %q: %q, %q, %v", id, n, got, ok)
		}
	}
	for _, c := range []string{"", "keep me", `name: "agentd"`, `name: "agentd" id: "x" extra`, `name: "agentd"  id: "x"`, `name: agentd id: "x"`} {
		if _, _, ok := parseMasqComment(c); ok {
			t.Errorf("parseMasqComment(%q) accepted it", c)
		}
	}
}
