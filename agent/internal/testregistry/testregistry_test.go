package testregistry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

func TestPlainHTTPPushOfTheTestImage(t *testing.T) {
	archive := testutil.TestImage(t)
	r := Start(t, Options{})
	if !strings.HasPrefix(r.URL(), "http://127.0.0.1:") || r.CAFile() != "" {
		t.Fatalf("URL %q CAFile %q, want http://127.0.0.1:PORT and no CA", r.URL(), r.CAFile())
	}

	want, err := LoadImage(t, archive).Digest()
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Push(t, archive, "busybox:1.0"); got != want {
		t.Fatalf("Push returned %s, want the archive's digest %s", got, want)
	}

	desc, err := remote.Get(r.parseRef(t, "busybox:1.0"), r.RemoteOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != want {
		t.Fatalf("registry serves busybox:1.0 as %s, want %s", desc.Digest, want)
	}
	img, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("pulled image has %d layers (%v), want the test image's 1", len(layers), err)
	}
	// The layer comes back whole: the remote reader checks its digest at EOF.
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("reading the layer back: %v", err)
	}
}

func TestTLSWithBasicAuth(t *testing.T) {
	r := Start(t, Options{TLS: true, Users: map[string]string{"alice": "s3cret", "bob": "hunter2"}})
	if !strings.HasPrefix(r.URL(), "https://127.0.0.1:") || r.CAFile() == "" {
		t.Fatalf("URL %q CAFile %q, want https://127.0.0.1:PORT and a CA file", r.URL(), r.CAFile())
	}
	want := r.PushImage(t, FakeImage(t, v1.Platform{OS: "linux", Architecture: "amd64"}), "team/app:v3")
	ref := r.parseRef(t, "team/app:v3")

	// CAFile is what a client (agentd) is configured with: it verifies the server.
	pem, err := os.ReadFile(r.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s holds no PEM certificate", r.CAFile())
	}
	withCA := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(withCA.CloseIdleConnections)

	for _, tc := range []struct {
		name       string
		user, pass string
		wantStatus int // 0: the pull succeeds
	}{
		{"right password", "bob", "hunter2", 0},
		{"wrong password", "alice", "wrong", http.StatusUnauthorized},
		{"unknown user", "mallory", "s3cret", http.StatusUnauthorized},
		{"anonymous", "", "", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			auth := authn.Anonymous
			if tc.user != "" {
				auth = &authn.Basic{Username: tc.user, Password: tc.pass}
			}
			desc, err := remote.Get(ref, remote.WithTransport(withCA), remote.WithAuth(auth))
			if tc.wantStatus == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if desc.Digest != want {
					t.Fatalf("digest %s, want %s", desc.Digest, want)
				}
				return
			}
			var terr *transport.Error
			if !errors.As(err, &terr) || terr.StatusCode != tc.wantStatus {
				t.Fatalf("got %v, want a registry error with status %d", err, tc.wantStatus)
			}
		})
	}

	t.Run("system CAs only", func(t *testing.T) {
		_, err := remote.Get(ref, remote.WithTransport(http.DefaultTransport), remote.WithAuth(&authn.Basic{Username: "bob", Password: "hunter2"}))
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("got %v, want x509: certificate signed by unknown authority", err)
		}
	})
}

func TestPushIndexOfTheTestImage(t *testing.T) {
	archive := testutil.TestImage(t)
	r := Start(t, Options{})
	img := LoadImage(t, archive)
	imgDigest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}

	want := r.PushIndex(t, archive, "multi:1")
	ref := r.parseRef(t, "multi:1")
	idx, err := remote.Index(ref, r.RemoteOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := idx.Digest(); err != nil || got != want {
		t.Fatalf("index digest %s (%v), want %s", got, err, want)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range im.Manifests {
		platforms = append(platforms, m.Platform.String())
	}
	if len(platforms) != 2 || platforms[0] != cf.Platform().String() || platforms[0] == platforms[1] {
		t.Fatalf("index platforms %v, want the test image's %s and one other", platforms, cf.Platform())
	}

	// A client asking for the test image's platform gets the test image itself.
	got, err := remote.Image(ref, append(r.RemoteOptions(), remote.WithPlatform(*cf.Platform()))...)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := got.Digest(); err != nil || d != imgDigest {
		t.Fatalf("image for %s is %s (%v), want the test image %s", cf.Platform(), d, err, imgDigest)
	}
}

func TestTagMovedToANewDigest(t *testing.T) {
	r := Start(t, Options{})
	img := FakeImage(t, v1.Platform{OS: "linux", Architecture: "amd64"})
	first := r.PushImage(t, img, "app:latest")
	second := r.PushImage(t, WithLabel(t, img, "version", "2"), "app:latest")
	if first == second {
		t.Fatalf("WithLabel kept the digest %s", first)
	}
	desc, err := remote.Head(r.parseRef(t, "app:latest"), r.RemoteOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != second {
		t.Fatalf("app:latest is %s, want the re-pushed %s", desc.Digest, second)
	}
}

func TestStoppedWhenTheTestEnds(t *testing.T) {
	var host string
	t.Run("registry", func(t *testing.T) {
		host = Start(t, Options{}).Host()
	})
	if host == "" {
		t.Fatal("the subtest did not start a registry")
	}
	// The cleanup waited for the process to exit, so nothing listens any more.
	c, err := net.Dial("tcp", host)
	if err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the test that started the registry ended", host)
	}
}

// recordingTB records how a helper ended a test: Skip and Fatal stop the
// goroutine, as they do in a real test.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skip(args ...any) {
	r.skipped = fmt.Sprint(args...)
	runtime.Goexit()
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestMissingBinarySkipsButFailsUnderCI(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("AGENTD_TEST_REGISTRY_BIN", "")
	old := fallbackBinary
	fallbackBinary = filepath.Join(t.TempDir(), "docker-registry")
	t.Cleanup(func() { fallbackBinary = old })

	for _, tc := range []struct {
		ci       string
		wantFail bool
	}{
		{ci: "", wantFail: false},
		{ci: "true", wantFail: true},
	} {
		t.Setenv("CI", tc.ci)
		rec := &recordingTB{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			findBinary(rec)
		}()
		<-done
		msg := rec.skipped
		if tc.wantFail {
			msg = rec.failed
		}
		if !strings.Contains(msg, "hack/install-deps.sh") {
			t.Errorf("CI=%q: skipped %q, failed %q; want it failed=%v with a message naming hack/install-deps.sh",
				tc.ci, rec.skipped, rec.failed, tc.wantFail)
		}
	}
}
