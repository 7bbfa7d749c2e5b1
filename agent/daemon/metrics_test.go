package daemon

import (
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"

	"github.com/agentd-project/agentd/agent/config"
)

func TestNewMetrics(t *testing.T) {
	for _, tc := range []struct {
		addr       string
		on, warned bool
	}{
		{"", false, false},
		{config.DefaultMetricsAddress, true, false},
		{"[::1]:10253", true, false},
		{"0.0.0.0:10253", true, true},
		{":10253", true, true},
	} {
		var logged []string
		log := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
		cfg := config.Default()
		cfg.MetricsAddress = tc.addr
		m := newMetrics(cfg, log)
		if (m != nil) != tc.on {
			t.Errorf("%q: metrics on = %v, want %v", tc.addr, m != nil, tc.on)
		}
		warned := len(logged) == 1 && strings.Contains(logged[0], "WARNING: metrics-address is not a loopback address") && strings.Contains(logged[0], tc.addr)
		if warned != tc.warned || !tc.warned && len(logged) > 0 {
			t.Errorf("%q: logged %q, want a warning: %v", tc.addr, logged, tc.warned)
		}
	}
}
