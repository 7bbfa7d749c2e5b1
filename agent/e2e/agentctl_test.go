package e2e

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestE2EAgentctlUnknownCommand: the built agentctl refuses a command or subcommand it
// does not have with an error naming it and exit status 1, as kubectl does.
func TestE2EAgentctlUnknownCommand(t *testing.T) {
	bin := testutil.BinDir(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"foo"}, `error: unknown command "foo" for "agentctl"`},
		{[]string{"image", "pull", "x"}, `error: unknown command "pull x"`},
		{[]string{"get", "foo"}, `error: the server doesn't have a resource type "foo"`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "agentctl"), append(tc.args, "--socket", "/nonexistent/agent.sock")...)
		out, err := cmd.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("agentctl %s: %v, want exit status 1\n%s", strings.Join(tc.args, " "), err, out)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("agentctl %s: output %q lacks %q", strings.Join(tc.args, " "), out, tc.want)
		}
	}
}
