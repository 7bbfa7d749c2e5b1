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
		{"a CRI client's file", protocol.LogConfig{Root: "/var/log/pods/ns_p_u", Dir: "/var/log/pods/ns_p_u/c", File: "c_0.log"},
			"/var/log/pods/ns_p_u/c_0.log", "/var/log/pods/ns_p_u", "c_0.log", nil},
		{"a CRI client's file in a subdirectory", protocol.LogConfig{Root: "/var/log/pods/ns_p_u", File: "c/0.log"},
			"/var/log/pods/ns_p_u/c/0.log", "/var/log/pods/ns_p_u", "c/0.log", nil},
		// Joined to the root, an absolute file would look beneath it: the config is refused instead.
		{"an absolute file", protocol.LogConfig{Root: "/var/log/pods/ns_p_u", File: "/etc/shadow"},
			"/var/log/pods/ns_p_u/etc/shadow", "", "", protocol.ErrBadLogFile},
		{"a file with dot-dot", protocol.LogConfig{Root: "/var/log/pods/ns_p_u", File: "c/../../x.log"},
			"/var/log/pods/x.log", "", "", protocol.ErrBadLogFile},
		{"a file without a root", protocol.LogConfig{Dir: "/var/log/pods/ns_p_u/c", File: "c_0.log"},
			"c_0.log", "", "", protocol.ErrBadLogFile},
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
