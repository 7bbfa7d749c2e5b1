package supervisor

import (
	"errors"
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/cri/crilog"
)

func TestLogFile(t *testing.T) {
	for _, tc := range []struct {
		name      string
		log       protocol.LogConfig
		path      string
		root, rel string
		err       error
	}{
		{"root given", protocol.LogConfig{Root: "/var/log/pods", Dir: "/var/log/pods/ns_p_u/c"},
			"/var/log/pods/ns_p_u/c/3.log", "/var/log/pods", "ns_p_u/c/3.log", nil},
		{"config from before Root: Dir's grandparent", protocol.LogConfig{Dir: "/var/log/pods/ns_p_u/c/"},
			"/var/log/pods/ns_p_u/c/0.log", "/var/log/pods", "ns_p_u/c/0.log", nil},
		{"a journal's path outside the root", protocol.LogConfig{Root: "/var/log/pods", Dir: "/var/log/pods/ns_p_u/c"},
			"/etc/shadow", "", "", crilog.ErrNotBeneath},
		{"dot-dot out of the root", protocol.LogConfig{Root: "/var/log/pods", Dir: "/var/log/pods/ns_p_u/c"},
			"/var/log/pods/../../etc/0.log", "", "", crilog.ErrNotBeneath},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, rel, err := LogFile(&protocol.ContainerConfig{Log: tc.log}, tc.path)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Errorf("LogFile: %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil || root != tc.root || rel != tc.rel {
				t.Errorf("LogFile = %q, %q, %v; want %q, %q", root, rel, err, tc.root, tc.rel)
			}
		})
	}
}
