package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testregistry"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestE2EImageGC: image removal never takes an image a container uses.
// `agentctl image rm` of it is refused naming the container, `image prune`
// removes only unused images, and garbage collection, turned on at SIGHUP with
// thresholds the disk is above, removes the unused images, keeps the used one,
// and records kubelet's FreeDiskSpaceFailed when it could not free enough.
func TestE2EImageGC(t *testing.T) {
	a := newAgent(t, map[string]any{"image-gc-high-threshold-percent": 100})
	a.start()
	a.write("web.yaml", simplePod("web", "exec sleep 3600"))
	a.waitStatus("web", "Running", 60*time.Second)

	// Images of their own (the test image's layers under a new config), unused.
	base := testregistry.LoadImage(t, testutil.TestImage(t))
	importImage := func(tag string) {
		t.Helper()
		ref, err := name.ParseReference("localhost/extra:" + tag)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), tag+".tar")
		if err := tarball.WriteToFile(path, ref, testregistry.WithLabel(t, base, "extra", tag)); err != nil {
			t.Fatal(err)
		}
		a.ctl("image", "import", path)
	}
	importImage("a")
	importImage("b")

	out, err := a.try("image", "rm", "localhost/busybox:latest")
	if err == nil || !strings.Contains(out, "in use by container main of pod default/web") {
		t.Errorf("removing the running pod's image: err %v, output %q; want a refusal naming the container", err, out)
	}
	out = a.ctl("image", "prune")
	if !strings.Contains(out, "localhost/extra:a") || !strings.Contains(out, "localhost/extra:b") || strings.Contains(out, "busybox") {
		t.Errorf("prune: %q, want both extra images deleted and busybox kept", out)
	}
	if imgs := a.ctl("get", "images"); !strings.Contains(imgs, "localhost/busybox") || strings.Contains(imgs, "extra") {
		t.Errorf("after prune:\n%s", imgs)
	}

	// Collection: above a 1% high threshold with a 0% low one, everything
	// unused goes, and that is not enough.
	importImage("c")
	setConfig(t, a, "image-gc-high-threshold-percent", 1)
	setConfig(t, a, "image-gc-low-threshold-percent", 0)
	setConfig(t, a, "image-minimum-gc-age", "0s")
	setConfig(t, a, "image-gc-period", "1s")
	_ = a.cmd.Process.Signal(unix.SIGHUP)
	a.eventually(60*time.Second, "extra:c collected and FreeDiskSpaceFailed recorded", func() (bool, string) {
		imgs, ev := a.ctl("get", "images"), a.ctl("get", "events")
		return !strings.Contains(imgs, "extra") && strings.Contains(ev, "FreeDiskSpaceFailed"), imgs + ev
	})
	if imgs := a.ctl("get", "images"); !strings.Contains(imgs, "localhost/busybox") {
		t.Errorf("collection removed the image of a running container:\n%s", imgs)
	}
	if ev := a.ctl("get", "events"); !strings.Contains(ev, "Failed to garbage collect required amount of images") {
		t.Errorf("events:\n%s", ev)
	}
	a.waitStatus("web", "Running", 10*time.Second)
}
