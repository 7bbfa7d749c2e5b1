package pull

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
)

// pullHelperEnv makes the test binary pull "<store dir>\n<ref>" and exit
// (see TestMain): a pull in another process, to be killed.
const pullHelperEnv = "AGENTD_PULL_TEST_HELPER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(pullHelperEnv); spec != "" {
		dir, ref, _ := strings.Cut(spec, "\n")
		s, err := image.Open(dir)
		if err == nil {
			_, err = New(s, Options{Parallel: 1}).Pull(context.Background(), ref, nil, nil)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// A pull killed at any of its steps (agentd killed, or the node losing
// power, mid-pull) leaves no image half made; Open removes what it left, the
// staging directory with its downloads included; and the pull then works.
func TestPullKilledAtEachStep(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"a": randomString(t, 128<<10)}, map[string]string{"b": randomString(t, 128<<10)})
	tr.push(t, img, "team/crash:v1")
	ref := tr.host + "/team/crash:v1"
	for _, point := range []string{"image-pull-blob-downloaded", "image-pull-blob-downloaded@2", "image-layer-unpacked", "image-layer-committed", "image-index-synced"} {
		t.Run(point, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "images")
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), pullHelperEnv+"="+dir+"\n"+ref, crashpoint.Env+"="+point)
			out, err := cmd.CombinedOutput()
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("the pull was to be killed at %s: %v\n%s", point, err, out)
			}
			if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) == 0 && strings.HasPrefix(point, "image-pull") {
				t.Fatal("the killed pull left no staging directory: the test shows nothing")
			}
			s, err := image.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			assertNothingLeft(t, s)
			if _, err := New(s, Options{}).Pull(context.Background(), ref, nil, nil); err != nil {
				t.Fatalf("pull after the crash: %v", err)
			}
			if _, err := s.Get(ref); err != nil {
				t.Error(err)
			}
		})
	}
}
