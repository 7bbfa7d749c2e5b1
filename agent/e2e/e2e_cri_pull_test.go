package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/internal/testregistry"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// TestE2ECRIPullImage: the CRI's PullImage, through cri-client as kubelet calls it, against two registries on
// loopback: a plain-HTTP one (a mirror endpoint in registries-config) pulled anonymously, and a TLS one with
// htpasswd for which the node has no credentials, pulled with the request's. image_ref is the image's ID as
// ImageStatus reports it; concurrent pulls of one ref all succeed with it; a missing tag is NotFound, no or wrong
// credentials Unauthenticated, and no password or auth string shows in agentd's log (at debug level) or in the
// errors. Every pull — the CRI's and a manifest pod's — shows on /metrics (issue 17).
func TestE2ECRIPullImage(t *testing.T) {
	archive := testutil.TestImage(t)
	plain := testregistry.Start(t, testregistry.Options{})
	plain.Push(t, archive, "busybox:1.0")
	plain.Push(t, archive, "team/busybox:2.0")
	const user, right, wrong = "alice", "right-Pa55word-7b3e", "wrong-Pa55word-1d8a"
	secured := testregistry.Start(t, testregistry.Options{TLS: true, Users: map[string]string{user: right}})
	secured.Push(t, archive, "private:1.0")

	files := t.TempDir()
	regs := writeTestFile(t, files, "registries.yaml", fmt.Sprintf("mirrors:\n  %q:\n    endpoint:\n    - %q\nconfigs:\n  %q:\n    tls:\n      ca_file: %q\n",
		plain.Host(), "http://"+plain.Host(), secured.Host(), secured.CAFile()))
	addr := freeLoopbackPort(t)
	a := newAgent(t, map[string]any{"registries-config": regs, "metrics-address": addr, "log-level": "debug"})
	a.start()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, images := criClients(t, ctx, filepath.Join(a.dir, "run", "cri.sock"))

	// Anonymous, from the plain registry: image_ref is the ID ImageStatus and agentctl report.
	ref := plain.Ref("busybox:1.0")
	id, err := images.PullImage(ctx, &runtimeapi.ImageSpec{Image: ref}, nil, &runtimeapi.PodSandboxConfig{})
	if err != nil {
		t.Fatalf("PullImage(%s): %v\n%s", ref, err, a.stderr)
	}
	st, err := images.ImageStatus(ctx, &runtimeapi.ImageSpec{Image: ref}, false)
	if err != nil || st.GetImage().GetId() != id || !strings.HasPrefix(id, "sha256:") || !slices.Contains(st.GetImage().GetRepoTags(), ref) {
		t.Fatalf("ImageStatus(%s) = %v, %v; want image_ref %s with the tag", ref, st, err, id)
	}
	if out := a.ctl("get", "images"); !strings.Contains(out, strings.TrimPrefix(id, "sha256:")[:12]) {
		t.Errorf("agentctl get images lacks %s:\n%s", id, out)
	}

	// Concurrent pulls of one ref (one transfer, the puller's singleflight): all get the same ID.
	ref2 := plain.Ref("team/busybox:2.0")
	const n = 4
	ids := make(chan string, n)
	for range n {
		go func() {
			got, err := images.PullImage(ctx, &runtimeapi.ImageSpec{Image: ref2}, nil, nil)
			if err != nil {
				got = err.Error()
			}
			ids <- got
		}()
	}
	for range n {
		if got := <-ids; got != id {
			t.Errorf("concurrent PullImage(%s) = %q, want %s (same image content)", ref2, got, id)
		}
	}

	// A missing tag: NotFound.
	_, err = images.PullImage(ctx, &runtimeapi.ImageSpec{Image: plain.Ref("busybox:nope")}, nil, nil)
	if status.Code(err) != codes.NotFound {
		t.Errorf("PullImage of a missing tag: %v, want NotFound", err)
	}

	// The secured registry: the node has no credentials, the request's are used.
	private := secured.Ref("private:1.0")
	_, err = images.PullImage(ctx, &runtimeapi.ImageSpec{Image: private}, nil, nil)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("PullImage without credentials: %v, want Unauthenticated", err)
	}
	_, err = images.PullImage(ctx, &runtimeapi.ImageSpec{Image: private}, &runtimeapi.AuthConfig{Username: user, Password: wrong, ServerAddress: secured.Host()}, nil)
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("PullImage with a wrong password: %v, want Unauthenticated", err)
	}
	wrongAuth := base64.StdEncoding.EncodeToString([]byte(user + ":" + wrong))
	_, err2 := images.PullImage(ctx, &runtimeapi.ImageSpec{Image: private}, &runtimeapi.AuthConfig{Auth: wrongAuth}, nil)
	if status.Code(err2) != codes.Unauthenticated {
		t.Errorf("PullImage with a wrong auth string: %v, want Unauthenticated", err2)
	}
	pid, err := images.PullImage(ctx, &runtimeapi.ImageSpec{Image: private}, &runtimeapi.AuthConfig{Username: user, Password: right}, nil)
	if err != nil || pid != id {
		t.Fatalf("PullImage with the request's credentials = %q, %v; want %s", pid, err, id)
	}
	rightAuth := base64.StdEncoding.EncodeToString([]byte(user + ":" + right))
	if err := images.RemoveImage(ctx, &runtimeapi.ImageSpec{Image: private}); err != nil {
		t.Fatal(err)
	}
	if pid, err := images.PullImage(ctx, &runtimeapi.ImageSpec{Image: private}, &runtimeapi.AuthConfig{Auth: rightAuth, ServerAddress: "https://" + secured.Host()}, nil); err != nil || pid != id {
		t.Errorf("PullImage with the request's auth string = %q, %v; want %s", pid, err, id)
	}

	for what, out := range map[string]string{"agentd's log": a.stderr.String(), "the errors": fmt.Sprint(err, err2), "agentctl get events": a.ctl("get", "events")} {
		for _, secret := range []string{right, wrong, rightAuth, wrongAuth} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows a credential (%q):\n%s", what, secret, out)
			}
		}
	}
	if !strings.Contains(a.stderr.String(), "Image pull failed") {
		t.Errorf("agentd did not log the failed pulls:\n%s", a.stderr)
	}

	// A manifest pod's pull counts too.
	a.write("pulled.yaml", pullPod("pulled", plain.Ref("busybox:1.0"), "Always"))
	a.waitStatus("pulled", "Running", 90*time.Second)

	// CRI: 1 + 4 + 1 (with the request's credentials) + 1 (auth string) succeeded; 1 missing tag + 3 refused
	// failed. The pod: 1 more success.
	a.eventually(30*time.Second, "the pulls on /metrics", func() (bool, string) {
		body := scrapeMetrics(addr)
		want := []string{
			`agentd_image_pulls_total{result="success"} 8`,
			`agentd_image_pulls_total{result="failure"} 4`,
			`agentd_image_pull_duration_seconds_count 12`,
			`agentd_image_pulls_in_progress 0`,
		}
		for _, w := range want {
			if !strings.Contains(body, w+"\n") {
				return false, "no " + w + " in:\n" + grepLines(body, "image_pull")
			}
		}
		if b := metricValue(body, "agentd_image_pulls_bytes_total"); b <= 0 {
			return false, "agentd_image_pulls_bytes_total not above 0:\n" + grepLines(body, "image_pull")
		}
		return true, ""
	})
}

// scrapeMetrics is the body of http://addr/metrics, or the error.
func scrapeMetrics(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// metricValue is the value of an unlabelled series in a scrape (-1 when absent).
func metricValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
