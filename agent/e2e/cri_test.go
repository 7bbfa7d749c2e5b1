package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// criClients connects k8s.io/cri-client, as kubelet does, to an agentd's CRI socket.
func criClients(t *testing.T, ctx context.Context, sock string) (internalapi.RuntimeService, internalapi.ImageManagerService) {
	t.Helper()
	rt, err := remote.NewRemoteRuntimeService(ctx, "unix://"+sock, 30*time.Second, nil, false)
	if err != nil {
		t.Fatalf("connect to the CRI runtime service: %v", err)
	}
	img, err := remote.NewRemoteImageService(ctx, "unix://"+sock, 30*time.Second, nil, false)
	if err != nil {
		t.Fatalf("connect to the CRI image service: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close(ctx); _ = img.Close(ctx) })
	return rt, img
}

// crictlPath is cri-tools' crictl (hack/build-cri-tools.sh), or "" with the reason it is not there.
func crictlPath() (string, string) {
	if p := os.Getenv("AGENTD_TEST_CRICTL"); p != "" {
		return p, ""
	}
	p, err := filepath.Abs("../../_output/tools/crictl")
	if err != nil {
		return "", err.Error()
	}
	if _, err := os.Stat(p); err != nil {
		return "", "crictl is not built (hack/build-cri-tools.sh builds it into _output/tools; AGENTD_TEST_CRICTL names another)"
	}
	return p, ""
}

// TestE2ECRIVersionAndImages: agentd serves the CRI on <run-dir>/cri.sock by default, root only; cri-client (what
// kubelet uses) and crictl get its version, status and images; RemoveImage refuses an image a container uses and
// removes it, idempotently, once the pod is gone; a socket left by a killed agentd is replaced at the next start,
// and a stopped agentd removes it.
func TestE2ECRIVersionAndImages(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	sock := filepath.Join(a.dir, "run", "cri.sock")
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatalf("no CRI socket at <run-dir>/cri.sock: %v\n%s", err, a.stderr)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("CRI socket mode %v, want a socket of mode 0600", fi.Mode())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rt, images := criClients(t, ctx, sock)

	v, err := rt.Version(ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if v.RuntimeName != "agentd" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion == "" || !strings.Contains(a.ctl("version"), v.RuntimeVersion) {
		t.Errorf("Version = %+v, want agentd's own version and CRI v1", v)
	}
	a.eventually(60*time.Second, "RuntimeReady and NetworkReady", func() (bool, string) {
		st, err := rt.Status(ctx, false)
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, c := range st.GetStatus().GetConditions() {
			if (c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady) && c.Status {
				ready++
			}
		}
		return ready == 2, st.String()
	})
	if rc, err := rt.RuntimeConfig(ctx); err != nil || rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("RuntimeConfig = %v, %v; want the cgroupfs driver", rc, err)
	}

	// The image the harness imported, imported again through agentd: agentctl and the CRI see one store.
	a.ctl("image", "import", testutil.TestImage(t))
	const name = "localhost/busybox:latest"
	list, err := images.ListImages(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || !slices.Contains(list[0].RepoTags, name) || !strings.HasPrefix(list[0].Id, "sha256:") || list[0].Size == 0 {
		t.Fatalf("ListImages = %v, want the test image", list)
	}
	id := list[0].Id
	if !strings.Contains(a.ctl("get", "images"), id[len("sha256:"):][:12]) {
		t.Errorf("agentctl does not show the image ID %s that the CRI reports", id)
	}
	for _, ref := range []string{name, "localhost/busybox", id, id[len("sha256:"):][:12]} {
		st, err := images.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false)
		if err != nil || st.GetImage().GetId() != id || !slices.Contains(st.GetImage().GetRepoTags(), name) {
			t.Errorf("ImageStatus(%s) = %v, %v; want image %s", ref, st, err, id)
		}
	}
	if filtered, err := images.ListImages(ctx, &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "localhost/alpine:3"}}); err != nil || len(filtered) != 0 {
		t.Errorf("ListImages of an absent image = %v, %v; want none", filtered, err)
	}
	fs, err := images.ImageFsInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.GetImageFilesystems()) != 1 {
		t.Fatalf("ImageFsInfo = %v, want one filesystem", fs)
	}
	u := fs.GetImageFilesystems()[0]
	if u.GetFsId().GetMountpoint() != filepath.Join(a.dir, "root", "images") || u.GetUsedBytes().GetValue() == 0 || u.GetInodesUsed().GetValue() == 0 ||
		time.Since(time.Unix(0, u.GetTimestamp())).Abs() > time.Minute {
		t.Errorf("ImageFsInfo = %v, want the store's directory, its filesystem's usage and the time", u)
	}

	if crictl, why := crictlPath(); crictl == "" {
		t.Logf("crictl part skipped: %s", why)
	} else {
		run := func(args ...string) string {
			t.Helper()
			cctx, ccancel := context.WithTimeout(ctx, 60*time.Second)
			defer ccancel()
			cmd := exec.CommandContext(cctx, crictl, append([]string{"--runtime-endpoint", "unix://" + sock, "--image-endpoint", "unix://" + sock, "--timeout", "30s"}, args...)...)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("crictl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			return string(out)
		}
		if out := run("version"); !strings.Contains(out, "RuntimeName:  agentd") || !strings.Contains(out, "RuntimeApiVersion:  v1") {
			t.Errorf("crictl version:\n%s", out)
		}
		if out := run("info"); !strings.Contains(out, `"type": "NetworkReady"`) {
			t.Errorf("crictl info:\n%s", out)
		}
		if out := run("images"); !strings.Contains(out, "localhost/busybox") || !strings.Contains(out, id[len("sha256:"):][:13]) {
			t.Errorf("crictl images does not list the test image:\n%s", out)
		}
		if out := run("inspecti", name); !strings.Contains(out, id) {
			t.Errorf("crictl inspecti %s:\n%s", name, out)
		}
		t.Logf("crictl version, info, images and inspecti answered through %s", crictl)
	}

	// In use by a container: refused, naming it.
	a.write("user.yaml", simplePod("user", "sleep 3600"))
	a.waitStatus("user", "Running", 60*time.Second)
	err = images.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: name})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "container main of pod default/user") {
		t.Errorf("RemoveImage of an image in use: %v, want FailedPrecondition naming the container", err)
	}
	if err := os.Remove(filepath.Join(a.manifest, "user.yaml")); err != nil {
		t.Fatal(err)
	}
	a.waitGone("user", 60*time.Second)
	if err := images.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: name}); err != nil {
		t.Fatalf("RemoveImage once no container uses it: %v", err)
	}
	if err := images.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: id}); err != nil {
		t.Errorf("RemoveImage of a removed image: %v, want OK", err)
	}
	if st, err := images.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: id}, false); err != nil || st.GetImage() != nil {
		t.Errorf("ImageStatus after RemoveImage = %v, %v; want no image", st, err)
	}
	if out := a.ctl("get", "images"); strings.Contains(out, "busybox") {
		t.Errorf("agentctl get images after the CRI's RemoveImage:\n%s", out)
	}

	// A killed agentd leaves its socket; the next one replaces it. A stopped one removes it.
	a.stop(unix.SIGKILL, 30*time.Second)
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("after kill -9 the socket is gone (%v): the test proves nothing", err)
	}
	a.start()
	rt2, _ := criClients(t, ctx, sock)
	if _, err := rt2.Version(ctx, "v1"); err != nil {
		t.Errorf("Version after a restart over a stale socket: %v", err)
	}
	a.stop(unix.SIGTERM, 60*time.Second)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("CRI socket after agentd stopped: %v, want it removed", err)
	}
}
