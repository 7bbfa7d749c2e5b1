package pull

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/agentd-project/agentd/agent/image"
)

// testRegistry is go-containerregistry's in-memory registry behind a
// middleware that counts blob GETs and lets a test change what a request
// gets.
type testRegistry struct {
	srv  *httptest.Server
	host string

	mu        sync.Mutex
	blobGETs  map[string]int // by digest, guarded by mu
	requests  []string       // "METHOD path range", guarded by mu
	intercept func(w http.ResponseWriter, r *http.Request, next http.Handler) bool
}

func newRegistry(t *testing.T, tlsServer bool) *testRegistry {
	t.Helper()
	tr := &testRegistry{blobGETs: map[string]int{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tr.mu.Lock()
		tr.requests = append(tr.requests, r.Method+" "+r.URL.Path+" "+r.Header.Get("Range"))
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			tr.blobGETs[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
		}
		ic := tr.intercept
		tr.mu.Unlock()
		if ic != nil && ic(w, r, reg) {
			return
		}
		reg.ServeHTTP(w, r)
	})
	tr.srv = httptest.NewUnstartedServer(h)
	tr.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the TLS tests' failed handshakes
	if tlsServer {
		tr.srv.StartTLS()
	} else {
		tr.srv.Start()
	}
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(strings.TrimPrefix(tr.srv.URL, "http://"), "https://")
	return tr
}

func (tr *testRegistry) setIntercept(f func(w http.ResponseWriter, r *http.Request, next http.Handler) bool) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.intercept = f
}

func (tr *testRegistry) blobCount(d v1.Hash) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.blobGETs[d.String()]
}

func (tr *testRegistry) totalBlobGETs() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, c := range tr.blobGETs {
		n += c
	}
	return n
}

func (tr *testRegistry) rangeRequests() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var out []string
	for _, r := range tr.requests {
		if strings.HasSuffix(r, " ") {
			continue
		}
		out = append(out, r)
	}
	return out
}

func (tr *testRegistry) push(t *testing.T, img v1.Image, repoTag string) {
	t.Helper()
	ref, err := name.ParseReference(tr.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(tr.srv.Client().Transport)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

func (tr *testRegistry) pushIndex(t *testing.T, idx v1.ImageIndex, repoTag string) {
	t.Helper()
	ref, err := name.ParseReference(tr.host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithTransport(tr.srv.Client().Transport)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// testImage makes an image of layers, each a tar of the files given
// (name → content), gzip-compressed.
func testImage(t testing.TB, layers ...map[string]string) v1.Image {
	t.Helper()
	var ls []v1.Layer
	for _, files := range layers {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for n, body := range files {
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: n, Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(1e9, 0)}); err != nil {
				t.Fatal(err)
			}
			tw.Write([]byte(body))
		}
		tw.Close()
		b := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.ConfigFile(img, &v1.ConfigFile{
		OS: "linux", Architecture: runtime.GOARCH,
		Config: v1.Config{Cmd: []string{"/bin/sh"}},
		RootFS: mustConfig(t, img).RootFS,
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mustConfig(t testing.TB, img v1.Image) *v1.ConfigFile {
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	return cf
}

func randomString(t testing.TB, n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)[:n]
}

func openStore(t *testing.T) *image.Store {
	t.Helper()
	s, err := image.Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func layerDigests(t testing.TB, img v1.Image) []v1.Hash {
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var out []v1.Hash
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

func configDigest(t testing.TB, img v1.Image) string {
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// assertNothingLeft checks that a failed pull left no image, no layer and
// no staging.
func assertNothingLeft(t *testing.T, s *image.Store) {
	t.Helper()
	imgs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 0 {
		t.Errorf("store has images after a failed pull: %v", imgs)
	}
	for _, d := range []string{"layers/sha256", "tmp"} {
		entries, err := os.ReadDir(filepath.Join(s.Dir(), d))
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Errorf("%s not empty after a failed pull: %v", d, names)
		}
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPullThenGet(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t,
		map[string]string{"etc/hello": "hello from layer 1\n"},
		map[string]string{"etc/greeting": "bonjour\n", "big": randomString(t, 300<<10)},
	)
	tr.push(t, img, "team/app:v1")
	s := openStore(t)
	p := New(s, Options{})

	var mu sync.Mutex
	statuses := map[string][]string{}
	ref := tr.host + "/team/app:v1"
	res, err := p.Pull(context.Background(), ref, nil, func(pr Progress) {
		mu.Lock()
		defer mu.Unlock()
		statuses[pr.Layer] = append(statuses[pr.Layer], pr.Status)
	})
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	wantDigest, _ := img.Digest()
	if res.ImageID != configDigest(t, img) || res.Digest != wantDigest.String() {
		t.Errorf("Result = %+v, want ImageID %s and Digest %s", res, configDigest(t, img), wantDigest)
	}
	wantNames := []string{tr.host + "/team/app:v1", tr.host + "/team/app@" + wantDigest.String()}
	if fmt.Sprint(res.Names) != fmt.Sprint(wantNames) && fmt.Sprint(res.Names) != fmt.Sprint([]string{wantNames[1], wantNames[0]}) {
		t.Errorf("Names = %v, want %v", res.Names, wantNames)
	}
	if res.Size <= 200<<10 || res.Duration <= 0 || res.Waited < res.Duration {
		t.Errorf("Size %d, Duration %v, Waited %v", res.Size, res.Duration, res.Waited)
	}
	for _, l := range layerDigests(t, img) {
		st := statuses[l.String()]
		if len(st) == 0 || st[0] != "Waiting" || st[len(st)-1] != "Pull complete" {
			t.Errorf("layer %s statuses %v, want Waiting ... Pull complete", l, st)
		}
	}

	got, err := s.Get(ref)
	if err != nil {
		t.Fatalf("store.Get(%s) after the pull: %v", ref, err)
	}
	if len(got.Layers) != 2 || got.ID != res.ImageID {
		t.Fatalf("stored image %+v", got)
	}
	b, err := os.ReadFile(filepath.Join(got.Layers[1], "etc/greeting"))
	if err != nil || string(b) != "bonjour\n" {
		t.Errorf("etc/greeting in the second layer: %q, %v", b, err)
	}
	if _, err := s.Get(tr.host + "/team/app@" + wantDigest.String()); err != nil {
		t.Errorf("Get by repo digest: %v", err)
	}

	// Again: every layer is there already, and no blob is fetched.
	before := tr.totalBlobGETs()
	statuses = map[string][]string{}
	if _, err := p.Pull(context.Background(), ref, nil, func(pr Progress) {
		mu.Lock()
		defer mu.Unlock()
		statuses[pr.Layer] = append(statuses[pr.Layer], pr.Status)
	}); err != nil {
		t.Fatal(err)
	}
	if n := tr.totalBlobGETs() - before; n != 1 { // the config only
		t.Errorf("second pull fetched %d blobs, want only the config", n)
	}
	for _, l := range layerDigests(t, img) {
		if st := statuses[l.String()]; len(st) != 1 || st[0] != "Already exists" {
			t.Errorf("second pull: layer %s statuses %v, want [Already exists]", l, st)
		}
	}
	assertTmpEmpty(t, s)
}

func assertTmpEmpty(t *testing.T, s *image.Store) {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp"))
	if len(entries) != 0 {
		t.Errorf("tmp/ has %d entries after the pull", len(entries))
	}
}

func TestPullDockerHubNameThroughMirror(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"f": "x"})
	tr.push(t, img, "library/nginx:latest")
	s := openStore(t)
	p := New(s, Options{Hosts: Hosts{Mirrors: map[string]Mirror{"docker.io": {Endpoints: []string{"http://" + tr.host}}}}})
	res, err := p.Pull(context.Background(), "nginx", nil, nil)
	if err != nil {
		t.Fatalf("Pull(nginx) through a mirror: %v", err)
	}
	if !contains(res.Names, "docker.io/library/nginx:latest") {
		t.Errorf("Names = %v, want docker.io/library/nginx:latest among them", res.Names)
	}
	if _, err := s.Get("nginx"); err != nil {
		t.Errorf("Get(nginx): %v", err)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// deadEndpoint is a loopback address nothing listens on.
func deadEndpoint(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestMirrorFallback(t *testing.T) {
	upstream := newRegistry(t, false)
	mirror := newRegistry(t, false)
	img := testImage(t, map[string]string{"f": "from upstream"})
	upstream.push(t, img, "team/app:v1")
	other := testImage(t, map[string]string{"f": "from the mirror"})
	mirror.push(t, other, "team/only-on-mirror:v1")

	s := openStore(t)
	var logMu sync.Mutex
	var logs []string
	logger := funcr.New(func(prefix, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		logs = append(logs, args)
	}, funcr.Options{})
	dead := deadEndpoint(t)
	p := New(s, Options{Log: logger, Hosts: Hosts{
		Mirrors: map[string]Mirror{upstream.host: {Endpoints: []string{"http://" + dead, "http://" + mirror.host}}},
		Configs: map[string]HostConfig{mirror.host: {Username: "mirror-user", Password: "mirror-secret-pw"}},
	}})
	// The dead mirror, then the mirror that does not have the image, then
	// the registry.
	res, err := p.Pull(context.Background(), upstream.host+"/team/app:v1", nil, nil)
	if err != nil {
		t.Fatalf("Pull: %v", err)
	}
	if res.ImageID != configDigest(t, img) {
		t.Errorf("pulled %s, want upstream's %s", res.ImageID, configDigest(t, img))
	}
	if upstream.totalBlobGETs() == 0 {
		t.Error("nothing came from upstream")
	}
	logMu.Lock()
	all := strings.Join(logs, "\n")
	logMu.Unlock()
	for _, want := range [][]string{
		{`"Mirror failed, trying the next endpoint"`, `"endpoint"="http://` + dead + `"`},
		{`"Mirror failed, trying the next endpoint"`, `"endpoint"="http://` + mirror.host + `"`, "NAME_UNKNOWN"},
		{`"Pulled image"`, `"endpoint"="` + upstream.host + `" "mirror"=false`},
	} {
		found := false
		for _, l := range strings.Split(all, "\n") {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(l, w)
			}
			found = found || ok
		}
		if !found {
			t.Errorf("the log has no line with %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "mirror-secret-pw") {
		t.Errorf("a password in the log:\n%s", all)
	}
	// A repository the mirror has comes from the mirror.
	res, err = p.Pull(context.Background(), upstream.host+"/team/only-on-mirror:v1", nil, nil)
	if err != nil {
		t.Fatalf("Pull from the mirror: %v", err)
	}
	if res.ImageID != configDigest(t, other) {
		t.Errorf("pulled %s, want the mirror's %s", res.ImageID, configDigest(t, other))
	}
}

func TestResumeWithRange(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"big": randomString(t, 2<<20)})
	tr.push(t, img, "team/big:v1")
	ld := layerDigests(t, img)[0]
	var cut atomic.Int32
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, ld.String()) || cut.Add(1) > 1 {
			return false
		}
		// The first GET of the layer: half of it, then the connection goes.
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	s := openStore(t)
	p := New(s, Options{})
	res, err := p.Pull(context.Background(), tr.host+"/team/big:v1", nil, nil)
	if err != nil {
		t.Fatalf("Pull after a cut: %v", err)
	}
	if res.ImageID != configDigest(t, img) {
		t.Errorf("ImageID %s", res.ImageID)
	}
	ranges := tr.rangeRequests()
	if len(ranges) != 1 || !strings.Contains(ranges[0], ld.String()+" bytes=") || strings.HasSuffix(ranges[0], "bytes=0-") {
		t.Errorf("requests with a Range: %v, want one for %s from the middle", ranges, ld)
	}
}

func TestProgressTimeout(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"big": randomString(t, 1<<20)})
	tr.push(t, img, "team/stall:v1")
	ld := layerDigests(t, img)[0]
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the server closes (cleanups run last first)
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, ld.String()) {
			return false
		}
		w.Header().Set("Content-Length", fmt.Sprint(1<<20))
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		<-release
		return true
	})
	s := openStore(t)
	p := New(s, Options{ProgressTimeout: 300 * time.Millisecond})
	_, err := p.Pull(context.Background(), tr.host+"/team/stall:v1", nil, nil)
	if !errors.Is(err, ErrNoProgress) {
		t.Fatalf("Pull of a stalled blob: %v, want ErrNoProgress", err)
	}
	if !strings.Contains(err.Error(), ld.String()) || !strings.Contains(err.Error(), "no byte received for") {
		t.Errorf("error %q does not say which layer and for how long", err)
	}
	if Reason(err) != "no progress" {
		t.Errorf("Reason = %q", Reason(err))
	}
	assertNothingLeft(t, s)
}

func TestBasicAuth(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"f": "secret stuff"})
	tr.push(t, img, "team/private:v1")
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if u, pw, ok := r.BasicAuth(); ok && u == "alice" && pw == "s3cret-pw" {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`)
		return true
	})
	ref := tr.host + "/team/private:v1"

	_, err := New(openStore(t), Options{}).Pull(context.Background(), ref, nil, nil)
	if Reason(err) != "unauthorized" {
		t.Errorf("anonymous pull: %v (Reason %q), want unauthorized", err, Reason(err))
	}
	_, err = New(openStore(t), Options{}).Pull(context.Background(), ref, &authn.Basic{Username: "alice", Password: "wrong-pw"}, nil)
	if Reason(err) != "unauthorized" || strings.Contains(err.Error(), "wrong-pw") {
		t.Errorf("pull with a wrong password: %v (Reason %q)", err, Reason(err))
	}

	if _, err := New(openStore(t), Options{}).Pull(context.Background(), ref, &authn.Basic{Username: "alice", Password: "s3cret-pw"}, nil); err != nil {
		t.Errorf("pull with the Pull's credentials: %v", err)
	}

	dir := t.TempDir()
	cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, tr.host, base64.StdEncoding.EncodeToString([]byte("alice:s3cret-pw")))
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600)
	if _, err := New(openStore(t), Options{Keychain: DockerConfigKeychain(filepath.Join(dir, "config.json"))}).Pull(context.Background(), ref, nil, nil); err != nil {
		t.Errorf("pull with docker config credentials: %v", err)
	}

	hosts := Hosts{Configs: map[string]HostConfig{tr.host: {Username: "alice", Password: "s3cret-pw"}}}
	if _, err := New(openStore(t), Options{Hosts: hosts}).Pull(context.Background(), ref, nil, nil); err != nil {
		t.Errorf("pull with the registries file's credentials: %v", err)
	}
}

func TestTamperedBlobLeavesNothing(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"a": "fine"}, map[string]string{"b": randomString(t, 100<<10)})
	tr.push(t, img, "team/tampered:v1")
	bad := layerDigests(t, img)[1]
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, bad.String()) {
			return false
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		body[len(body)/2] ^= 0xff
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
		return true
	})
	s := openStore(t)
	_, err := New(s, Options{}).Pull(context.Background(), tr.host+"/team/tampered:v1", nil, nil)
	if !errors.Is(err, image.ErrDigestMismatch) {
		t.Fatalf("Pull of a tampered blob: %v, want ErrDigestMismatch", err)
	}
	if !strings.Contains(err.Error(), bad.String()) {
		t.Errorf("error %q does not name the layer", err)
	}
	assertNothingLeft(t, s)
}

func TestIndexPlatforms(t *testing.T) {
	tr := newRegistry(t, false)
	mine := testImage(t, map[string]string{"f": "mine"})
	other := testImage(t, map[string]string{"f": "other"})
	otherArch := "s390x"
	if runtime.GOARCH == "s390x" {
		otherArch = "ppc64le"
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: nodePlatform()}},
	)
	tr.pushIndex(t, idx, "team/multi:v1")
	s := openStore(t)
	p := New(s, Options{})
	res, err := p.Pull(context.Background(), tr.host+"/team/multi:v1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	if res.ImageID != configDigest(t, mine) || res.Digest != idxDigest.String() {
		t.Errorf("Result %+v, want image %s from index %s", res, configDigest(t, mine), idxDigest)
	}

	only := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "windows", Architecture: runtime.GOARCH}}},
	)
	tr.pushIndex(t, only, "team/foreign:v1")
	_, err = p.Pull(context.Background(), tr.host+"/team/foreign:v1", nil, nil)
	if !errors.Is(err, ErrNoPlatform) || Reason(err) != "no matching platform" {
		t.Fatalf("Pull of an index without our platform: %v", err)
	}
	if !strings.Contains(err.Error(), "linux/"+otherArch) || !strings.Contains(err.Error(), "windows/"+runtime.GOARCH) {
		t.Errorf("error %q does not list the index's platforms", err)
	}
}

func TestConcurrentPullsShareOneTransfer(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"a": randomString(t, 64<<10)}, map[string]string{"b": randomString(t, 64<<10)})
	tr.push(t, img, "team/shared:v1")
	gate := make(chan struct{})
	var held atomic.Int32
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			held.Add(1)
			<-gate
		}
		return false
	})
	s := openStore(t)
	p := New(s, Options{})
	ref := tr.host + "/team/shared:v1"
	type out struct {
		res Result
		err error
	}
	first, second := make(chan out, 1), make(chan out, 1)
	go func() { r, err := p.Pull(context.Background(), ref, nil, nil); first <- out{r, err} }()
	waitFor(t, "the first pull to reach a blob", func() bool { return held.Load() > 0 })
	go func() { r, err := p.Pull(context.Background(), ref, nil, nil); second <- out{r, err} }()
	waitFor(t, "the second pull to join the first", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, f := range p.flights {
			if f.waiters == 2 {
				return true
			}
		}
		return false
	})
	close(gate)
	a, b := <-first, <-second
	if a.err != nil || b.err != nil {
		t.Fatalf("pulls: %v, %v", a.err, b.err)
	}
	if a.res.ImageID != b.res.ImageID {
		t.Errorf("different images: %s, %s", a.res.ImageID, b.res.ImageID)
	}
	if b.res.Waited <= 0 || b.res.Duration != a.res.Duration {
		t.Errorf("second pull: Waited %v, Duration %v (first's %v)", b.res.Waited, b.res.Duration, a.res.Duration)
	}
	for _, l := range layerDigests(t, img) {
		if n := tr.blobCount(l); n != 1 {
			t.Errorf("layer %s fetched %d times, want once", l, n)
		}
	}
}

func TestCancelledWaiterDoesNotStopTheOther(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"a": randomString(t, 64<<10)})
	tr.push(t, img, "team/shared:v1")
	gate := make(chan struct{})
	var held atomic.Int32
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			held.Add(1)
			<-gate
		}
		return false
	})
	p := New(openStore(t), Options{})
	ref := tr.host + "/team/shared:v1"
	ctx, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() { _, err := p.Pull(ctx, ref, nil, nil); firstErr <- err }()
	waitFor(t, "the first pull to reach a blob", func() bool { return held.Load() > 0 })
	second := make(chan error, 1)
	go func() { _, err := p.Pull(context.Background(), ref, nil, nil); second <- err }()
	waitFor(t, "the second pull to join", func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, f := range p.flights {
			if f.waiters == 2 {
				return true
			}
		}
		return false
	})
	cancel()
	if err := <-firstErr; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled pull: %v", err)
	}
	close(gate)
	if err := <-second; err != nil {
		t.Errorf("the other pull failed with the first: %v", err)
	}
}

func TestTLSWithTestCA(t *testing.T) {
	tr := newRegistry(t, true)
	img := testImage(t, map[string]string{"f": "over TLS"})
	tr.push(t, img, "team/tls:v1")
	ref := tr.host + "/team/tls:v1"

	_, err := New(openStore(t), Options{}).Pull(context.Background(), ref, nil, nil)
	if Reason(err) != "TLS" {
		t.Errorf("pull without the CA: %v (Reason %q), want TLS", err, Reason(err))
	}

	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tr.srv.Certificate().Raw}), 0o600)
	p := New(openStore(t), Options{Hosts: Hosts{Configs: map[string]HostConfig{tr.host: {CAFile: ca}}}})
	if _, err := p.Pull(context.Background(), ref, nil, nil); err != nil {
		t.Fatalf("pull with the CA: %v", err)
	}
}

func TestStoreLimitLeavesNothing(t *testing.T) {
	tr := newRegistry(t, false)
	// Too large to download at all, and too large once unpacked only (a
	// megabyte of zeros compresses to a kilobyte).
	tr.push(t, testImage(t, map[string]string{"a": randomString(t, 200<<10)}), "team/large:v1")
	tr.push(t, testImage(t, map[string]string{"a": "small"}, map[string]string{"zeros": string(make([]byte, 1<<20))}), "team/bomb:v1")
	for _, repo := range []string{"team/large:v1", "team/bomb:v1"} {
		s := openStore(t)
		s.SetLimits(image.Limits{MaxImageSize: 64 << 10})
		_, err := New(s, Options{}).Pull(context.Background(), tr.host+"/"+repo, nil, nil)
		if !errors.Is(err, image.ErrTooLarge) || !strings.Contains(err.Error(), "image-max-size") {
			t.Fatalf("pull of %s over image-max-size: %v", repo, err)
		}
		assertNothingLeft(t, s)
	}
}

func TestNotFound(t *testing.T) {
	tr := newRegistry(t, false)
	tr.push(t, testImage(t, map[string]string{"f": "x"}), "team/app:v1")
	p := New(openStore(t), Options{})
	_, err := p.Pull(context.Background(), tr.host+"/team/app:nope", nil, nil)
	if r := Reason(err); r != "manifest unknown" {
		t.Errorf("unknown tag: %v, Reason %q", err, r)
	}
	_, err = p.Pull(context.Background(), tr.host+"/team/nothing:v1", nil, nil)
	if r := Reason(err); r != "not found" && r != "manifest unknown" {
		t.Errorf("unknown repository: %v, Reason %q", err, r)
	}
}

// A registry with a token service: the bearer flow, with basic credentials
// traded for a token.
func TestBearerToken(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"f": "behind a token"})
	tr.push(t, img, "team/tok:v1")
	var tokens atomic.Int32
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.URL.Path == "/token" {
			if u, pw, ok := r.BasicAuth(); !ok || u != "alice" || pw != "tok-pw" {
				w.WriteHeader(http.StatusUnauthorized)
				return true
			}
			if !strings.Contains(r.URL.Query().Get("scope"), "repository:team/tok:pull") {
				w.WriteHeader(http.StatusForbidden)
				return true
			}
			tokens.Add(1)
			io.WriteString(w, `{"token":"good-token"}`)
			return true
		}
		if r.Header.Get("Authorization") == "Bearer good-token" {
			return false
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="test"`, tr.host))
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"errors":[{"code":"UNAUTHORIZED","message":"token required"}]}`)
		return true
	})
	ref := tr.host + "/team/tok:v1"
	s := openStore(t)
	if _, err := New(s, Options{}).Pull(context.Background(), ref, &authn.Basic{Username: "alice", Password: "tok-pw"}, nil); err != nil {
		t.Fatalf("pull with a token: %v", err)
	}
	if tokens.Load() == 0 {
		t.Error("no token was asked for")
	}
	if _, err := New(openStore(t), Options{}).Pull(context.Background(), ref, nil, nil); Reason(err) != "unauthorized" {
		t.Errorf("anonymous pull: %v (Reason %q)", err, Reason(err))
	}
}

func TestCancelledPullLeavesNothing(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"a": randomString(t, 256<<10)}, map[string]string{"b": randomString(t, 256<<10)})
	tr.push(t, img, "team/cancel:v1")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	var held atomic.Int32
	second := layerDigests(t, img)[1]
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, second.String()) {
			return false
		}
		w.Header().Set("Content-Length", "1000000")
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		held.Add(1)
		<-release
		return true
	})
	s := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := New(s, Options{}).Pull(ctx, tr.host+"/team/cancel:v1", nil, nil); errc <- err }()
	waitFor(t, "the second layer's download to stall", func() bool { return held.Load() > 0 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
	// The transfer goes on a moment after the Pull returned: wait for it
	// to clean up.
	waitFor(t, "the staging directory to go", func() bool {
		entries, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp"))
		return len(entries) == 0
	})
	assertNothingLeft(t, s)
}

func TestRetriesServerErrors(t *testing.T) {
	tr := newRegistry(t, false)
	img := testImage(t, map[string]string{"a": randomString(t, 64<<10)})
	tr.push(t, img, "team/flaky:v1")
	ld := layerDigests(t, img)[0]
	var calls atomic.Int32
	tr.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, ld.String()) && calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return true
		}
		return false
	})
	if _, err := New(openStore(t), Options{}).Pull(context.Background(), tr.host+"/team/flaky:v1", nil, nil); err != nil {
		t.Fatalf("pull through two 503s: %v", err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d GETs of the layer, want 3", n)
	}

	// A registry that keeps failing: the pull gives up, saying why.
	calls.Store(-100)
	_, err := New(openStore(t), Options{}).Pull(context.Background(), tr.host+"/team/flaky:v1", nil, nil)
	if err == nil || !strings.Contains(err.Error(), "giving up after") || !strings.Contains(err.Error(), "503") {
		t.Errorf("pull from a failing registry: %v", err)
	}
}

func TestProgressCallsNeverOverlap(t *testing.T) {
	tr := newRegistry(t, false)
	var layers []map[string]string
	for i := range 6 {
		layers = append(layers, map[string]string{fmt.Sprintf("f%d", i): randomString(t, 2<<20)})
	}
	img := testImage(t, layers...)
	tr.push(t, img, "team/many:v1")
	var inside, overlaps, calls atomic.Int32
	_, err := New(openStore(t), Options{Parallel: 4}).Pull(context.Background(), tr.host+"/team/many:v1", nil, func(Progress) {
		if inside.Add(1) > 1 {
			overlaps.Add(1)
		}
		calls.Add(1)
		runtime.Gosched()
		inside.Add(-1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if overlaps.Load() > 0 {
		t.Errorf("%d of %d progress calls overlapped another", overlaps.Load(), calls.Load())
	}
}

// A mirror that accepts the connection and then sends nothing is given up
// after the progress timeout, and the registry itself serves the pull.
func TestStalledMirrorFallsBack(t *testing.T) {
	upstream := newRegistry(t, false)
	img := testImage(t, map[string]string{"f": "x"})
	upstream.push(t, img, "team/app:v1")
	mirror := newRegistry(t, false)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	mirror.setIntercept(func(w http.ResponseWriter, r *http.Request, next http.Handler) bool {
		<-release
		return true
	})
	p := New(openStore(t), Options{
		ProgressTimeout: 300 * time.Millisecond,
		Hosts:           Hosts{Mirrors: map[string]Mirror{upstream.host: {Endpoints: []string{"http://" + mirror.host}}}},
	})
	if _, err := p.Pull(context.Background(), upstream.host+"/team/app:v1", nil, nil); err != nil {
		t.Fatalf("pull past a stalled mirror: %v", err)
	}
}

// Layers may be uncompressed tars (docker save made ones, pushed as they
// are), and compressed with zstd.
func TestUncompressedAndZstdLayers(t *testing.T) {
	tr := newRegistry(t, false)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "plain", Mode: 0o644, Size: 5, ModTime: time.Unix(1e9, 0)})
	tw.Write([]byte("plain"))
	tw.Close()
	plain := static.NewLayer(buf.Bytes(), types.OCIUncompressedLayer)
	zbuf := bytes.Buffer{}
	tw = tar.NewWriter(&zbuf)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "zstd", Mode: 0o644, Size: 4, ModTime: time.Unix(1e9, 0)})
	tw.Write([]byte("zstd"))
	tw.Close()
	zb := zbuf.Bytes()
	zl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(zb)), nil }, tarball.WithCompression(compression.ZStd))
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), plain, zl)
	if err != nil {
		t.Fatal(err)
	}
	tr.push(t, img, "team/mixed:v1")
	s := openStore(t)
	if _, err := New(s, Options{}).Pull(context.Background(), tr.host+"/team/mixed:v1", nil, nil); err != nil {
		t.Fatalf("Pull: %v", err)
	}
	got, err := s.Get(tr.host + "/team/mixed:v1")
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []string{"plain", "zstd"} {
		if b, err := os.ReadFile(filepath.Join(got.Layers[i], f)); err != nil || string(b) != f {
			t.Errorf("layer %d: %s = %q, %v", i+1, f, b, err)
		}
	}
}
