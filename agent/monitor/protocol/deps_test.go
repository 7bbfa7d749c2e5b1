package protocol

import (
	"os/exec"
	"strings"
	"testing"
)

// The protocol is imported by the lean monitor, which must stay small, and by
// agentd, which must never link libcontainer: what each links is pinned here.
func TestImportsStaySmall(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to list packages with")
	}
	deps := func(pkg string) []string {
		out, err := exec.Command(goBin, "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		return strings.Fields(string(out))
	}
	const module = "github.com/agentd-project/agentd/"
	for _, tc := range []struct {
		pkg   string
		allow func(dep string) bool
	}{
		{"github.com/agentd-project/agentd/agent/monitor/protocol", func(d string) bool {
			return !strings.Contains(d, ".") || strings.HasPrefix(d, "golang.org/x/sys/") ||
				d == module+"agent/internal/atomicfile" || d == module+"agent/monitor/protocol"
		}},
		{"github.com/agentd-project/agentd/cmd/agent-monitor-lean", func(d string) bool {
			return !strings.Contains(d, ".") || strings.HasPrefix(d, "golang.org/x/sys/") || strings.HasPrefix(d, module)
		}},
		{"github.com/agentd-project/agentd/cmd/agentd", func(d string) bool {
			return !strings.Contains(d, "opencontainers/runc")
		}},
	} {
		for _, d := range deps(tc.pkg) {
			if strings.HasPrefix(d, "vendor/") || d == "C" {
				continue
			}
			if !tc.allow(d) {
				t.Errorf("%s links %s", tc.pkg, d)
			}
		}
	}
}
