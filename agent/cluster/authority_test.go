package cluster

import (
	"strings"
	"testing"
)

func TestMemberHostAllowed(t *testing.T) {
	for _, tt := range []struct {
		host, remote string
		ok           bool
		why          string
	}{
		{"10.0.0.5", "10.0.0.5:43210", true, ""},
		{"127.0.0.1", "10.0.0.5:43210", true, ""},
		{"::1", "[fe80::1]:5", true, ""},
		{"10.0.0.6", "10.0.0.5:43210", false, "joins from 10.0.0.5"},
		{"join.example", "10.0.0.5:43210", false, "must name an IP address"},
		{"2001:db8::5", "[2001:db8::5]:443", true, ""},
	} {
		err := memberHostAllowed(tt.host, tt.remote)
		if (err == nil) != tt.ok || err != nil && !strings.Contains(err.Error(), tt.why) {
			t.Errorf("memberHostAllowed(%q, %q) = %v, want ok=%v (%s)", tt.host, tt.remote, err, tt.ok, tt.why)
		}
	}
}
