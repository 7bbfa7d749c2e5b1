package api

import "testing"

func TestPeerAllowed(t *testing.T) {
	for _, tc := range []struct {
		name        string
		peer, self  uint32
		wantAllowed bool
	}{
		{"root, agentd root", 0, 0, true},
		{"a user, agentd root", 1000, 0, false},
		{"nobody, agentd root", 65534, 0, false},
		{"root, agentd a user", 0, 1000, true},
		{"agentd's own user", 1000, 1000, true},
		{"another user, agentd a user", 1001, 1000, false},
	} {
		if got := peerAllowed(tc.peer, tc.self); got != tc.wantAllowed {
			t.Errorf("%s: peerAllowed(%d, %d) = %v, want %v", tc.name, tc.peer, tc.self, got, tc.wantAllowed)
		}
	}
}
