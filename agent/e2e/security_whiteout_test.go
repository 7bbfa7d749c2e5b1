package e2e

import (
	"archive/tar"
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestE2EImageUserLookupHonoursWhiteouts: an image's USER is a name ("app")
// that only a lower layer's /etc/passwd knows (uid 1234), and an upper layer
// deletes that file: by a whiteout of /etc/passwd, by an opaque /etc with a
// new passwd, or by deleting /etc and making it again (without a passwd) in
// one layer. The
// container must see the upper layer's /etc and so must the monitor's user
// lookup: the start fails with a clear reason, and nothing runs as 1234. The
// same image without the upper layer runs as 1234, so the lookup itself
// works. Both storage drivers (an overlay mount of the layer store, and vfs,
// a copy of the layers) are run, and each test checks it got the one it asked
// for.
func TestE2EImageUserLookupHonoursWhiteouts(t *testing.T) {
	dir := func(name string) imgEntry {
		return imgEntry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755}}
	}
	file := func(name, body string) imgEntry {
		return imgEntry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body: body}
	}
	const (
		rootOnly = "root:x:0:0:root:/root:/bin/sh\n"
		groups   = "root:x:0:\n"
	)
	lower := []imgEntry{
		dir("etc"),
		file("etc/passwd", rootOnly+"app:x:1234:1234::/:/bin/sh\n"),
		file("etc/group", groups+"app:x:1234:\n"),
	}
	images := []struct {
		name  string
		upper []imgEntry // nil: no upper layer, the user resolves
	}{
		{"lower-only", nil},
		{"passwd-whiteout", []imgEntry{dir("etc"), file("etc/.wh.passwd", "")}},
		{"opaque-etc", []imgEntry{dir("etc"), file("etc/.wh..wh..opq", ""), file("etc/group", groups), file("etc/passwd", rootOnly)}},
		// rm -rf /etc; mkdir /etc; echo ... >/etc/hostname: the new /etc has no
		// passwd, and the lower one must not show through it.
		{"etc-deleted-and-remade", []imgEntry{file(".wh.etc", ""), dir("etc"), file("etc/hostname", "remade\n")}},
	}

	for _, driver := range []string{"overlay", "vfs"} {
		t.Run(driver, func(t *testing.T) {
			a := newAgent(t, map[string]any{"storage-driver": driver})
			base, err := tarball.ImageFromPath(testutil.TestImage(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			a.start()
			if info := a.ctl("info"); !strings.Contains(info, "Storage Driver: "+driver) {
				t.Fatalf("agentd does not run with storage driver %s:\n%s", driver, info)
			}
			for _, im := range images {
				img := imgAppend(t, base, imgLayer(t, lower...))
				if im.upper != nil {
					img = imgAppend(t, img, imgLayer(t, im.upper...))
				}
				cf, err := img.ConfigFile()
				if err != nil {
					t.Fatal(err)
				}
				cfg := cf.Config.DeepCopy()
				cfg.User = "app"
				if img, err = mutate.Config(img, *cfg); err != nil {
					t.Fatal(err)
				}
				ref := "localhost/whiteout-" + im.name + ":1"
				a.ctl("image", "import", imgDockerArchive(t, a.dir, ref, img))
				pod := simplePod(im.name, "echo ids $(id -u) $(id -g); while true; do sleep 0.2 & wait; done")
				a.write(im.name+".yaml", strings.Replace(pod, "localhost/busybox:latest", ref, 1))
			}

			for _, im := range images {
				if im.upper == nil {
					a.eventually(60*time.Second, im.name+" prints its ids", func() (bool, string) {
						logs, _ := a.try("logs", im.name)
						return strings.Contains(logs, "ids "), logs + "\n" + a.show("describe", "pod", im.name)
					})
					if logs := a.ctl("logs", im.name); !strings.Contains(logs, "ids 1234 1234") {
						t.Errorf("%s: the image's user app did not resolve to 1234:1234: %q", im.name, logs)
					}
					continue
				}
				// Wait for the start error, or for a container that runs anyway
				// (with a lower layer's /etc/passwd): that fails at once.
				var msg string
				var ran *corev1.ContainerStateRunning
				a.eventually(60*time.Second, im.name+" refused to start", func() (bool, string) {
					p := a.pod(im.name)
					if p == nil || len(p.Status.ContainerStatuses) == 0 {
						return false, ""
					}
					cs := p.Status.ContainerStatuses[0]
					if ran = cs.State.Running; ran != nil {
						return true, ""
					}
					for _, st := range []corev1.ContainerState{cs.State, cs.LastTerminationState} {
						if st.Terminated != nil && st.Terminated.Reason == "StartError" {
							msg = st.Terminated.Message
							return true, ""
						}
					}
					return false, fmt.Sprintf("%+v", cs)
				})
				if ran != nil {
					logs, _ := a.try("logs", im.name)
					t.Errorf("%s: the container runs although its image's /etc/passwd has no user app (a lower layer's file was read): %q", im.name, logs)
					continue
				}
				if !strings.Contains(msg, `user "app"`) || !strings.Contains(msg, "unable to find user app") {
					t.Errorf("%s: start error %q does not say that user app is not in the image's /etc/passwd", im.name, msg)
				}
				if logs, _ := a.try("logs", im.name); strings.Contains(logs, "ids") {
					t.Errorf("%s: the container ran although its image's /etc/passwd has no user app: %q", im.name, logs)
				}
			}

			// The rootfs of the running pod is what the driver says: an overlay
			// mount under run-dir, or none.
			overlays := overlayMountsUnder(t, a.dir)
			if driver == "overlay" && overlays == 0 {
				t.Errorf("storage driver overlay but no overlay mount under %s", a.dir)
			}
			if driver == "vfs" && overlays != 0 {
				t.Errorf("storage driver vfs but %d overlay mounts under %s", overlays, a.dir)
			}
		})
	}
}

// overlayMountsUnder counts the overlay mounts at or below dir in this mount
// namespace (the monitors mount rootfses in it).
func overlayMountsUnder(t *testing.T, dir string) int {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		if fields[sep+1] == "overlay" && strings.HasPrefix(fields[4], dir+"/") {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
