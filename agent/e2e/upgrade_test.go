package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestE2EUpgrade runs hack/test-upgrade.sh: pods started by the previous landed
// agentd (hack/upgrade-from) are adopted by this one, and their old monitors exec,
// restart and stop with the new binaries installed over theirs. The script builds
// the old version once (kept in _output/upgrade-from/) and cleans up after itself.
func TestE2EUpgrade(t *testing.T) {
	testutil.RequiresRoot(t)
	bin := testutil.BinDir(t)
	img := testutil.TestImage(t)
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("no git: the old version is built from the repository's history")
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "hack", "test-upgrade.sh"))
	if err != nil {
		t.Fatal(err)
	}
	// Building the old version from a cold cache takes the longest.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, script)
	cmd.Env = append(os.Environ(), "AGENTD_TEST_BIN="+bin, "AGENTD_TEST_IMAGE="+img)
	// SIGTERM, not SIGKILL, at the deadline: the script's clean-up must run.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = time.Minute
	out, err := cmd.CombinedOutput()
	t.Logf("%s:\n%s", script, out)
	if err != nil {
		t.Fatalf("%s: %v", script, err)
	}
}
