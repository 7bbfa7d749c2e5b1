package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/internal/testregistry"
	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// pullPod is a pod that runs image, with imagePullPolicy policy ("" for the default).
func pullPod(name, image, policy string) string {
	p := strings.Replace(simplePod(name, "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"), "localhost/busybox:latest", image, 1)
	if policy == "" {
		return strings.Replace(p, "    imagePullPolicy: Never\n", "", 1)
	}
	return strings.Replace(p, "imagePullPolicy: Never", "imagePullPolicy: "+policy, 1)
}

// writeTestFile writes a file under dir and returns its path.
func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// containerImageID is the imageID in the status of a pod's first container.
func (a *agent) containerImageID(name string) string {
	p := a.pod(name)
	if p == nil || len(p.Status.ContainerStatuses) == 0 {
		return ""
	}
	return p.Status.ContainerStatuses[0].ImageID
}

// waitEvent waits until `agentctl get events` shows a line with every one of parts.
func (a *agent) waitEvent(timeout time.Duration, parts ...string) string {
	a.t.Helper()
	var found string
	a.eventually(timeout, fmt.Sprintf("an event with %q", parts), func() (bool, string) {
		out, _ := a.try("get", "events")
		for _, line := range strings.Split(out, "\n") {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(line, p)
			}
			if ok {
				found = line
				return true, out
			}
		}
		return false, out
	})
	return found
}

// A pod whose image is on a plain-HTTP registry (a mirror endpoint with an
// http:// URL in registries-config) runs after kubelet's Pulling and Pulled
// events; a :latest tag moved to another image is pulled again (Always) by
// the next pod, and `agentctl image pull` and `get images` show the digests.
func TestE2EPullFromPlainHTTPRegistry(t *testing.T) {
	archive := testutil.TestImage(t)
	r := testregistry.Start(t, testregistry.Options{})
	d1 := r.Push(t, archive, "busybox:1.0")
	r.Push(t, archive, "busybox:latest")

	regs := writeTestFile(t, t.TempDir(), "registries.yaml", fmt.Sprintf("mirrors:\n  %q:\n    endpoint:\n    - %q\n", r.Host(), "http://"+r.Host()))
	a := newAgent(t, map[string]any{"registries-config": regs})
	a.start()

	ref := r.Ref("busybox:1.0")
	a.write("pulled.yaml", pullPod("pulled", ref, ""))
	a.waitStatus("pulled", "Running", 90*time.Second)
	a.waitEvent(10*time.Second, "Pulling", fmt.Sprintf("Pulling image %q", ref))
	pulled := a.waitEvent(10*time.Second, "Pulled", fmt.Sprintf("Successfully pulled image %q in ", ref), "including waiting). Image size: ")
	if !strings.Contains(pulled, "Normal") {
		t.Errorf("Pulled event: %s", pulled)
	}
	if out := a.ctl("get", "images"); !strings.Contains(out, r.Host()+"/busybox") || !strings.Contains(out, d1.String()) {
		t.Errorf("get images lacks the pulled image with its digest %s:\n%s", d1, out)
	}

	// :latest (Always): the first pod pulls the image the tag names now …
	latest := r.Ref("busybox:latest")
	a.write("latest1.yaml", pullPod("latest1", latest, ""))
	a.waitStatus("latest1", "Running", 90*time.Second)
	first := a.containerImageID("latest1")
	// … and once the tag moves, the next pod gets the new image.
	moved := testregistry.WithLabel(t, testregistry.LoadImage(t, archive), "agentd.test/version", "2")
	d2 := r.PushImage(t, moved, "busybox:latest")
	cfg2, err := moved.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	a.write("latest2.yaml", pullPod("latest2", latest, ""))
	a.waitStatus("latest2", "Running", 90*time.Second)
	if got := a.containerImageID("latest2"); got != cfg2.String() || got == first {
		t.Errorf("the pod after the tag moved runs image %q, want the new %s (the first ran %s)", got, cfg2, first)
	}
	if got := a.containerImageID("latest1"); got != first {
		t.Errorf("the running pod's image changed from %s to %s", first, got)
	}

	// agentctl image pull: the tag's digest, exit 0; a missing tag: exit 1 with the error.
	out := a.ctl("image", "pull", latest)
	if !strings.Contains(out, "Digest: "+d2.String()) || !strings.Contains(out, "Pulled: "+latest) {
		t.Errorf("agentctl image pull %s:\n%s", latest, out)
	}
	if out, err := a.try("image", "pull", r.Ref("busybox:nope")); err == nil || !strings.Contains(out, "error: ") {
		t.Errorf("agentctl image pull of a missing tag: %v\n%s", err, out)
	}
	if out := a.ctl("get", "images"); !strings.Contains(out, d2.String()) {
		t.Errorf("get images lacks the moved tag's digest %s:\n%s", d2, out)
	}
}

// A TLS registry (the test CA in registries-config) with htpasswd: the right
// password in image-pull-auth-file pulls; the wrong one (set at SIGHUP) ends
// in ImagePullBackOff whose message says unauthorized; no password appears in
// describe, the events or agentd's log.
func TestE2EPullFromTLSRegistryWithAuth(t *testing.T) {
	archive := testutil.TestImage(t)
	const user, right, wrong = "alice", "right-Pa55word-4e1f", "wrong-Pa55word-9c2d"
	r := testregistry.Start(t, testregistry.Options{TLS: true, Users: map[string]string{user: right}})
	r.Push(t, archive, "busybox:1.0")
	r.Push(t, archive, "busybox:2.0")

	files := t.TempDir()
	regs := writeTestFile(t, files, "registries.yaml", fmt.Sprintf("configs:\n  %q:\n    tls:\n      ca_file: %q\n", r.Host(), r.CAFile()))
	auth := func(name, password string) string {
		cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{r.Host(): map[string]string{
			"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))}}})
		return writeTestFile(t, files, name, string(cfg))
	}
	a := newAgent(t, map[string]any{"registries-config": regs, "image-pull-auth-file": auth("auth-right.json", right)})
	a.start()

	a.write("allowed.yaml", pullPod("allowed", r.Ref("busybox:1.0"), "IfNotPresent"))
	a.waitStatus("allowed", "Running", 90*time.Second)

	a.imgReconfigure(map[string]any{"image-pull-auth-file": auth("auth-wrong.json", wrong)}, "image-pull-auth-file")
	denied := r.Ref("busybox:2.0")
	a.write("denied.yaml", pullPod("denied", denied, "IfNotPresent"))
	a.waitStatus("denied", "ImagePullBackOff", 90*time.Second)
	var msg string
	a.eventually(30*time.Second, "an ImagePullBackOff message naming unauthorized", func() (bool, string) {
		p := a.pod("denied")
		if p == nil || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Waiting == nil {
			return false, fmt.Sprintf("%+v", p)
		}
		w := p.Status.ContainerStatuses[0].State.Waiting
		msg = w.Message
		return w.Reason == "ImagePullBackOff" && strings.Contains(strings.ToLower(msg), "unauthorized"), w.Reason + ": " + msg
	})
	if !strings.HasPrefix(msg, fmt.Sprintf("Back-off pulling image %q: ErrImagePull: ", denied)) {
		t.Errorf("ImagePullBackOff message: %q", msg)
	}
	a.waitEvent(10*time.Second, "Failed", fmt.Sprintf("Failed to pull image %q: ", denied))
	a.waitEvent(10*time.Second, "Failed", "Error: ErrImagePull")
	a.waitEvent(10*time.Second, "BackOff", fmt.Sprintf("Back-off pulling image %q", denied))
	a.waitEvent(10*time.Second, "Failed", "Error: ImagePullBackOff")

	seen := map[string]string{
		"describe pod denied":  a.ctl("describe", "pod", "denied"),
		"describe pod allowed": a.ctl("describe", "pod", "allowed"),
		"get events":           a.ctl("get", "events"),
		"get pods -o yaml":     a.ctl("get", "pods", "-o", "yaml"),
		"agentd's log":         a.stderr.String(),
	}
	for what, out := range seen {
		for _, secret := range []string{right, wrong, base64.StdEncoding.EncodeToString([]byte(user + ":" + right)), base64.StdEncoding.EncodeToString([]byte(user + ":" + wrong))} {
			if strings.Contains(out, secret) {
				t.Errorf("%s shows a password (%q):\n%s", what, secret, out)
			}
		}
	}

	// The right password again, at SIGHUP: the pod runs once its back-off ends.
	a.imgReconfigure(map[string]any{"image-pull-auth-file": filepath.Join(files, "auth-right.json")}, "image-pull-auth-file")
	a.waitStatus("denied", "Running", 90*time.Second)
	if p := a.pod("denied"); p == nil || p.Status.Phase != corev1.PodRunning {
		t.Errorf("denied after the right password: %+v", p)
	}
}
