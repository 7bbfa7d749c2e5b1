package benchutil

import (
	"net/netip"
	"reflect"
	"testing"
)

func TestNATRulesIn(t *testing.T) {
	out := `-P POSTROUTING ACCEPT
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 10.198.101.0/24 -m comment --comment "agentd network \"agentd\" bridge \"agt1\" subnet 10.198.101.0/24: masquerade traffic from pods leaving the subnet" -j AGENTD-MASQ-2D12D6D7B9ACA072
-A POSTROUTING -s 10.198.101.7/32 -m comment --comment "name: \"agentd\" id: \"uid\"" -j CNI-bdff72f63326faf018464c6f
-A POSTROUTING -s 10.198.102.0/24 -m comment --comment "agentd network \"agentd\" bridge \"agt2\" subnet 10.198.102.0/24: masquerade traffic from pods leaving the subnet" -j AGENTD-MASQ-0123456789ABCDEF
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
`
	got := natRulesIn(out, netip.MustParsePrefix("10.198.101.0/24"))
	var chains []string
	var agentds []bool
	for _, r := range got {
		chains, agentds = append(chains, r.chain), append(agentds, r.agentds)
	}
	if want := []string{"AGENTD-MASQ-2D12D6D7B9ACA072", "CNI-bdff72f63326faf018464c6f"}; !reflect.DeepEqual(chains, want) {
		t.Errorf("chains %q, want %q", chains, want)
	}
	// agentd's rule is removed but not reported; a pod's is a leak.
	if want := []bool{true, false}; !reflect.DeepEqual(agentds, want) {
		t.Errorf("agentd's %v, want %v", agentds, want)
	}
}
