package server_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-containerregistry/pkg/authn"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	internalapi "k8s.io/cri-api/pkg/apis"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	remote "k8s.io/cri-client/pkg"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/cri/server"
)

// fakeBackend is a Backend over a map of images; it records RemoveImage calls.
type fakeBackend struct {
	lifecycleStub // the sandbox and container lifecycle: nothing known (lifecycle_test.go)

	mu         sync.Mutex
	netReady   bool
	images     map[string]image.Image // by ID
	inUse      map[string]string      // image ID → the container using it
	removed    []string
	fs         server.FsUsage
	listFailed error
	pull       func(ctx context.Context, ref string, auth authn.Authenticator) (string, error) // PullImage (pull_test.go)
}

var _ server.Backend = (*fakeBackend)(nil)

func (f *fakeBackend) NetworkStatus() (bool, string, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.netReady {
		return true, "ignored", "ignored when ready"
	}
	return false, "NetworkPluginNotReady", "pod networking is unavailable"
}

func (f *fakeBackend) Images() ([]image.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listFailed != nil {
		return nil, f.listFailed
	}
	var out []image.Image
	for _, img := range f.images {
		out = append(out, img)
	}
	return out, nil
}

// Image resolves a name, an ID or an ID prefix of 4 or more hex digits.
func (f *fakeBackend) Image(ref string) (*image.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.ContainsAny(ref, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		return nil, fmt.Errorf("%w %q: uppercase", image.ErrInvalidReference, ref)
	}
	norm := ref
	if !strings.Contains(ref, ":") {
		norm = "docker.io/library/" + ref + ":latest"
	}
	for id, img := range f.images {
		if id == ref || len(ref) >= 4 && strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), ref) {
			return &img, nil
		}
		for _, n := range img.Names {
			if n == ref || n == norm {
				return &img, nil
			}
		}
	}
	return nil, fmt.Errorf("%w: %s", image.ErrNotFound, ref)
}

func (f *fakeBackend) RemoveImage(_ context.Context, ref string) error {
	img, err := f.Image(ref)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if c := f.inUse[img.ID]; c != "" {
		return fmt.Errorf("%w: image %s (%s) is in use by %s", server.ErrFailedPrecondition, ref, img.ID, c)
	}
	delete(f.images, img.ID)
	f.removed = append(f.removed, img.ID)
	return nil
}

func (f *fakeBackend) ImageFs() (server.FsUsage, error) { return f.fs, nil }

const (
	busyboxID = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	nginxID   = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	digest    = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

func newFake() *fakeBackend {
	return &fakeBackend{
		netReady: true,
		images: map[string]image.Image{
			busyboxID: {ID: busyboxID, Names: []string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:latest", "localhost/bb:1"},
				Digest: digest, Size: 1234, Config: image.Config{User: "1002:1004", Cmd: []string{"sh"}}},
			nginxID: {ID: nginxID, Names: []string{"registry.k8s.io/e2e-test-images/nginx:1.14-2"}, Size: 99,
				Config: image.Config{User: "www-data"}},
		},
		inUse: map[string]string{},
		fs:    server.FsUsage{Mountpoint: "/var/lib/agent/images", UsedBytes: 4096, InodesUsed: 17},
	}
}

type fixture struct {
	b    *fakeBackend
	sock string
	rt   internalapi.RuntimeService
	img  internalapi.ImageManagerService
	ctx  context.Context
}

// serve runs a server of b on a socket made as agentd makes it (api.ListenUnix) and connects cri-client to it,
// both stopped when the test ends.
func serve(t *testing.T, b *fakeBackend) *fixture {
	t.Helper()
	f := serveBackend(t, b)
	f.b = b
	return f
}

// serveBackend is serve for any Backend; the fixture's b is nil.
func serveBackend(t *testing.T, b server.Backend) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := api.ListenUnix(sock, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	s := server.New(b, "v1.2.3-test", logr.Discard())
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		s.Stop(5 * time.Second)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket after Stop: %v, want it removed", err)
		}
	})
	rt, err := remote.NewRemoteRuntimeService(ctx, "unix://"+sock, 10*time.Second, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.NewRemoteImageService(ctx, "unix://"+sock, 10*time.Second, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.Close(ctx); _ = img.Close(ctx) })
	return &fixture{sock: sock, rt: rt, img: img, ctx: ctx}
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s: code %v (%v), want %v", what, got, err, want)
	}
}

func TestVersionStatusRuntimeConfig(t *testing.T) {
	f := serve(t, newFake())
	fi, err := os.Stat(f.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket of mode 0600", fi.Mode())
	}

	v, err := f.rt.Version(f.ctx, "v1")
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "0.1.0" || v.RuntimeName != "agentd" || v.RuntimeVersion != "v1.2.3-test" || v.RuntimeApiVersion != "v1" {
		t.Errorf("Version = %+v", v)
	}

	conditions := func() map[string]*runtimeapi.RuntimeCondition {
		t.Helper()
		st, err := f.rt.Status(f.ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]*runtimeapi.RuntimeCondition{}
		for _, c := range st.GetStatus().GetConditions() {
			m[c.Type] = c
		}
		return m
	}
	c := conditions()
	if r, n := c[runtimeapi.RuntimeReady], c[runtimeapi.NetworkReady]; !r.GetStatus() || !n.GetStatus() || n.GetReason() != "" || n.GetMessage() != "" {
		t.Errorf("Status with the network up: %v, want RuntimeReady and NetworkReady true, no reasons", c)
	}
	f.b.mu.Lock()
	f.b.netReady = false
	f.b.mu.Unlock()
	c = conditions()
	if r, n := c[runtimeapi.RuntimeReady], c[runtimeapi.NetworkReady]; !r.GetStatus() || n == nil || n.Status || n.Reason != "NetworkPluginNotReady" || n.Message != "pod networking is unavailable" {
		t.Errorf("Status with the network down: %v, want RuntimeReady true, NetworkReady false with the backend's reason", c)
	}

	rc, err := f.rt.RuntimeConfig(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rc.GetLinux().GetCgroupDriver() != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("RuntimeConfig = %v, want the cgroupfs driver", rc)
	}
}

// TestUnimplemented: what agentd does not serve yet says so with codes.Unimplemented, never a fake success.
func TestUnimplemented(t *testing.T) {
	f := serve(t, newFake())
	_, err := f.rt.RunPodSandbox(f.ctx, &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "default", Uid: "u"}}, "")
	wantCode(t, "RunPodSandbox", err, codes.Unimplemented)
	_, _, err = f.rt.ExecSync(f.ctx, "abc", []string{"true"}, time.Second)
	wantCode(t, "ExecSync", err, codes.Unimplemented)
	_, err = f.rt.ListMetricDescriptors(f.ctx)
	wantCode(t, "ListMetricDescriptors", err, codes.Unimplemented)
}

func tags(imgs []*runtimeapi.Image) [][]string {
	var out [][]string
	for _, i := range imgs {
		out = append(out, i.RepoTags)
	}
	return out
}

func TestImages(t *testing.T) {
	f := serve(t, newFake())

	all, err := f.img.ListImages(f.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 {
		t.Fatalf("ListImages = %v, want both images", tags(all))
	}
	for _, tc := range []struct{ filter, want string }{{"busybox", busyboxID}, {"localhost/bb:1", busyboxID}, {"2222", nginxID}, {"alpine", ""}} {
		got, err := f.img.ListImages(f.ctx, &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: tc.filter}})
		switch {
		case err != nil:
			t.Errorf("ListImages(%s): %v", tc.filter, err)
		case tc.want == "" && len(got) != 0, tc.want != "" && (len(got) != 1 || got[0].Id != tc.want):
			t.Errorf("ListImages(%s) = %v, want %s", tc.filter, got, tc.want)
		}
	}
	_, err = f.img.ListImages(f.ctx, &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "Busybox"}})
	wantCode(t, "ListImages with a malformed filter", err, codes.InvalidArgument)

	// ImageStatus by name, ID prefix and full ID: the same image, as the CRI shows it.
	want := &runtimeapi.Image{
		Id:          busyboxID,
		RepoTags:    []string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:latest", "localhost/bb:1"},
		RepoDigests: []string{"docker.io/library/busybox@" + digest, "localhost/bb@" + digest},
		Size:        1234,
		Uid:         &runtimeapi.Int64Value{Value: 1002},
		Spec:        &runtimeapi.ImageSpec{Image: busyboxID},
	}
	for _, ref := range []string{"busybox", "docker.io/library/busybox:1.36", "1111", busyboxID} {
		st, err := f.img.ImageStatus(f.ctx, &runtimeapi.ImageSpec{Image: ref}, false)
		if err != nil {
			t.Fatalf("ImageStatus(%s): %v", ref, err)
		}
		if got := st.GetImage(); got.String() != want.String() {
			t.Errorf("ImageStatus(%s).Image =\n %v\nwant\n %v", ref, got, want)
		}
		if st.Info != nil {
			t.Errorf("ImageStatus(%s) without verbose has info %v", ref, st.Info)
		}
	}
	st, err := f.img.ImageStatus(f.ctx, &runtimeapi.ImageSpec{Image: "registry.k8s.io/e2e-test-images/nginx:1.14-2"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if img := st.GetImage(); img.Uid != nil || img.Username != "www-data" || len(img.RepoDigests) != 0 || img.Size != 99 {
		t.Errorf("nginx image: %v, want username www-data, no uid, no digests (none known), size 99", img)
	}
	if !strings.Contains(st.Info["info"], `"User":"www-data"`) {
		t.Errorf("verbose info %v does not show the config", st.Info)
	}
	st, err = f.img.ImageStatus(f.ctx, &runtimeapi.ImageSpec{Image: "alpine:3"}, true)
	if err != nil || st.GetImage() != nil {
		t.Errorf("ImageStatus of an absent image = %v, %v; want no image and no error", st, err)
	}
	_, err = f.img.ImageStatus(f.ctx, &runtimeapi.ImageSpec{Image: ""}, false)
	wantCode(t, "ImageStatus of no image", err, codes.InvalidArgument)

	fs, err := f.img.ImageFsInfo(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.ImageFilesystems) != 1 {
		t.Fatalf("ImageFsInfo = %v, want one filesystem", fs)
	}
	u := fs.ImageFilesystems[0]
	if u.GetFsId().GetMountpoint() != "/var/lib/agent/images" || u.GetUsedBytes().GetValue() != 4096 || u.GetInodesUsed().GetValue() != 17 ||
		time.Since(time.Unix(0, u.Timestamp)).Abs() > time.Hour {
		t.Errorf("ImageFsInfo = %v", u)
	}
}

func TestRemoveImage(t *testing.T) {
	f := serve(t, newFake())
	f.b.inUse[busyboxID] = "container app of pod default/web"

	err := f.img.RemoveImage(f.ctx, &runtimeapi.ImageSpec{Image: "localhost/bb:1"})
	wantCode(t, "RemoveImage of an image in use", err, codes.FailedPrecondition)
	if err == nil || !strings.Contains(err.Error(), "container app of pod default/web") {
		t.Errorf("RemoveImage of an image in use: %v, want the container named", err)
	}
	if err := f.img.RemoveImage(f.ctx, &runtimeapi.ImageSpec{Image: "sha256:" + strings.Repeat("9", 64)}); err != nil {
		t.Errorf("RemoveImage of an unknown ID: %v, want OK (RemoveImage is idempotent)", err)
	}
	if err := f.img.RemoveImage(f.ctx, &runtimeapi.ImageSpec{Image: "alpine"}); err != nil {
		t.Errorf("RemoveImage of an unknown name: %v, want OK", err)
	}
	err = f.img.RemoveImage(f.ctx, &runtimeapi.ImageSpec{Image: "Alpine"})
	wantCode(t, "RemoveImage of a malformed name", err, codes.InvalidArgument)

	if err := f.img.RemoveImage(f.ctx, &runtimeapi.ImageSpec{Image: "registry.k8s.io/e2e-test-images/nginx:1.14-2"}); err != nil {
		t.Fatal(err)
	}
	if err := f.img.RemoveImage(f.ctx, &runtimeapi.ImageSpec{Image: "registry.k8s.io/e2e-test-images/nginx:1.14-2"}); err != nil {
		t.Errorf("RemoveImage twice: %v, want OK", err)
	}
	if !reflect.DeepEqual(f.b.removed, []string{nginxID}) {
		t.Errorf("removed %v, want the nginx image once", f.b.removed)
	}
	st, err := f.img.ImageStatus(f.ctx, &runtimeapi.ImageSpec{Image: nginxID}, false)
	if err != nil || st.GetImage() != nil {
		t.Errorf("ImageStatus after RemoveImage = %v, %v; want no image", st, err)
	}
}

// TestErrorsBecomeStatuses: a backend failure reaches the client as Internal with its message, not as a hang or a
// closed connection.
func TestErrorsBecomeStatuses(t *testing.T) {
	b := newFake()
	b.listFailed = errors.New("image store index /x/images.json is corrupt")
	f := serve(t, b)
	_, err := f.img.ListImages(f.ctx, nil)
	wantCode(t, "ListImages of a broken store", err, codes.Internal)
	if err == nil || !strings.Contains(err.Error(), "images.json is corrupt") {
		t.Errorf("ListImages: %v, want the backend's message", err)
	}
}
