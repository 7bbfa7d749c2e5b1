package pull

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/agentd-project/agentd/agent/internal/testregistry"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// Against the real distribution registry (Debian's docker-registry), over
// TLS with a test CA and htpasswd basic auth: a multi-platform index, pulled
// with docker config credentials, unpacked into the store.
func TestRootPullFromDockerRegistry(t *testing.T) {
	testutil.RequiresRoot(t)
	r := testregistry.Start(t, testregistry.Options{TLS: true, Users: map[string]string{"alice": "s3cret-pw"}})
	img := testImage(t, map[string]string{"etc/motd": "pulled from docker-registry\n"}, map[string]string{"big": randomString(t, 1<<20)})
	other := v1.Platform{OS: "linux", Architecture: "s390x"}
	if nodePlatform().Architecture == "s390x" {
		other.Architecture = "ppc64le"
	}
	idxDigest := r.PushIndexOf(t, "team/app:v1",
		testregistry.PlatformImage{Platform: other, Image: testregistry.FakeImage(t, other)},
		testregistry.PlatformImage{Platform: *nodePlatform(), Image: img},
	)

	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.Host(), base64.StdEncoding.EncodeToString([]byte("alice:s3cret-pw")))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t)
	p := New(s, Options{
		Hosts:    Hosts{Configs: map[string]HostConfig{r.Host(): {CAFile: r.CAFile()}}},
		Keychain: DockerConfigKeychain(DefaultDockerConfigPaths(dir)...),
	})
	ref := r.Ref("team/app:v1")
	res, err := p.Pull(context.Background(), ref, nil, nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if res.ImageID != configDigest(t, img) || res.Digest != idxDigest.String() {
		t.Errorf("Result %+v, want image %s of index %s", res, configDigest(t, img), idxDigest)
	}
	got, err := s.Get(ref)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(got.Layers[0], "etc/motd"))
	if err != nil || string(b) != "pulled from docker-registry\n" {
		t.Errorf("etc/motd: %q, %v", b, err)
	}

	// Without the credentials: unauthorized.
	_, err = New(openStore(t), Options{Hosts: p.opts.Hosts}).Pull(context.Background(), ref, nil, nil)
	if Reason(err) != "unauthorized" {
		t.Errorf("anonymous pull: %v (Reason %q)", err, Reason(err))
	}
}
