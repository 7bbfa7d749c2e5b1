package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/internal/testutil"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestE2EManifestDirectory: files added, edited, renamed in, removed; editor files,
// malformed files and duplicates — each as a user of kubelet's static pods expects.
func TestE2EManifestDirectory(t *testing.T) {
	a := newAgent(t, nil)
	a.start()

	a.write("hello.yaml", simplePod("hello", "trap 'exit 0' TERM; echo hello from $HOSTNAME; while true; do sleep 0.2 & wait; done"))
	a.waitStatus("hello", "Running", 30*time.Second)
	a.eventually(30*time.Second, "log line", func() (bool, string) {
		out, _ := a.try("logs", "hello")
		return strings.Contains(out, "hello from hello"), out
	})
	first := a.pod("hello")
	cid := first.Status.ContainerStatuses[0].ContainerID
	if !strings.HasPrefix(cid, "agentd://") || first.Status.PodIP == "" || first.Status.Phase != corev1.PodRunning {
		t.Errorf("status: %+v", first.Status)
	}

	// An identical rewrite changes nothing. A broken file written after it shows when the agent has had its chance:
	// the snapshot that reports it was taken after the rewrite.
	a.write("hello.yaml", simplePod("hello", "trap 'exit 0' TERM; echo hello from $HOSTNAME; while true; do sleep 0.2 & wait; done"))
	a.write("marker.yaml", "kind: [")
	a.eventually(30*time.Second, "InvalidManifest event for marker.yaml", func() (bool, string) {
		out := a.ctl("get", "events")
		return strings.Contains(out, "InvalidManifest") && strings.Contains(out, "marker.yaml"), out
	})
	if p := a.pod("hello"); p == nil || p.UID != first.UID || p.Status.ContainerStatuses[0].ContainerID != cid {
		t.Errorf("identical rewrite replaced the pod")
	}
	if err := os.Remove(filepath.Join(a.manifest, "marker.yaml")); err != nil {
		t.Fatal(err)
	}

	// An edit replaces the pod.
	a.write("hello.yaml", simplePod("hello", "trap 'exit 0' TERM; echo edited; while true; do sleep 0.2 & wait; done"))
	a.eventually(30*time.Second, "edited pod running", func() (bool, string) {
		p := a.pod("hello")
		return p != nil && p.UID != first.UID && p.Status.Phase == corev1.PodRunning, a.show("get", "pods")
	})
	a.eventually(30*time.Second, "edited log", func() (bool, string) {
		out, _ := a.try("logs", "hello")
		return strings.Contains(out, "edited"), out
	})

	// Editor files are ignored; so are dotfiles.
	for _, name := range []string{"hello.yaml~", ".hello.yaml.swp", "4913", "#hello.yaml#", "backup.yaml.bak", ".hidden.yaml"} {
		if err := os.WriteFile(filepath.Join(a.manifest, name), []byte(simplePod("ghost-"+strings.NewReplacer(".", "", "~", "", "#", "").Replace(name), "sleep 1")), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A malformed file: an event naming the file and field, everything else carries on.
	a.write("bad.yaml", strings.Replace(simplePod("bad", "true"), "imagePullPolicy", "imagePullPolcy", 1))
	a.eventually(30*time.Second, "InvalidManifest event", func() (bool, string) {
		out := a.ctl("get", "events")
		return strings.Contains(out, "InvalidManifest") && strings.Contains(out, "bad.yaml") && strings.Contains(out, "spec.containers[0].imagePullPolcy: unknown field"), out
	})
	// Fixing it creates the pod.
	a.write("bad.yaml", simplePod("bad", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"))
	a.waitStatus("bad", "Running", 30*time.Second)

	// A second file with the same pod name is refused, naming both files.
	a.write("zz-dup.yaml", simplePod("hello", "sleep 1000"))
	a.eventually(30*time.Second, "DuplicatePod event", func() (bool, string) {
		out := a.ctl("get", "events", "-o", "json")
		return strings.Contains(out, "DuplicatePod") && strings.Contains(out, "zz-dup.yaml") && strings.Contains(out, "hello.yaml"), out
	})

	out := a.ctl("get", "pods", "--no-headers")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if name := strings.Fields(line)[0]; name != "hello" && name != "bad" {
			t.Errorf("unexpected pod %s (from an editor file or a duplicate?)\n%s", name, out)
		}
	}

	// Removing a file stops the pod; its log stays on disk.
	logDir := filepath.Join(a.dir, "logs")
	if err := os.Remove(filepath.Join(a.manifest, "bad.yaml")); err != nil {
		t.Fatal(err)
	}
	a.waitGone("bad", 30*time.Second)
	matches, _ := filepath.Glob(filepath.Join(logDir, "default_bad_*", "main", "0.log"))
	if len(matches) == 0 {
		t.Errorf("the removed pod's log is gone")
	}
	if entries, _ := os.ReadDir(filepath.Join(a.dir, "run", "pods")); len(entries) != 1 {
		t.Errorf("pod sandboxes left: %d, want 1 (hello)", len(entries))
	}
}

// TestE2EInitProbesAndRestarts: init containers in order, readiness gates Ready,
// a failing liveness probe restarts the container through its monitor.
func TestE2EInitProbesAndRestarts(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("web.yaml", `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{name: www}]
  initContainers:
  - name: first
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo first > /www/order"]
    volumeMounts: [{name: www, mountPath: /www}]
  - name: second
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "echo second >> /www/order; echo ok > /www/healthz"]
    volumeMounts: [{name: www, mountPath: /www}]
  containers:
  - name: httpd
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["httpd", "-f", "-p", "8080", "-h", "/www"]
    ports: [{name: http, containerPort: 8080}]
    volumeMounts: [{name: www, mountPath: /www}]
    readinessProbe:
      httpGet: {path: /healthz, port: http}
      periodSeconds: 1
    livenessProbe:
      exec: {command: ["cat", "/www/healthz"]}
      periodSeconds: 1
      failureThreshold: 2
`)
	a.eventually(30*time.Second, "web ready", func() (bool, string) {
		out, _ := a.try("get", "pods", "web", "--no-headers")
		f := strings.Fields(out)
		return len(f) > 2 && f[1] == "1/1" && f[2] == "Running", out
	})
	order := a.ctl("exec", "web", "-c", "httpd", "--", "cat", "/www/order")
	if order != "first\nsecond\n" {
		t.Errorf("init order: %q", order)
	}
	p := a.pod("web")
	if len(p.Status.InitContainerStatuses) != 2 || p.Status.InitContainerStatuses[1].State.Terminated == nil ||
		p.Status.InitContainerStatuses[1].State.Terminated.Reason != "Completed" {
		t.Errorf("init statuses: %+v", p.Status.InitContainerStatuses)
	}

	// Break readiness and liveness: NotReady, then a restart by the liveness probe.
	a.ctl("exec", "web", "-c", "httpd", "--", "rm", "/www/healthz")
	a.eventually(30*time.Second, "liveness restart", func() (bool, string) {
		p := a.pod("web")
		return p != nil && p.Status.ContainerStatuses[0].RestartCount >= 1, a.show("describe", "pod", "web")
	})
	ev := a.ctl("get", "events")
	for _, want := range []string{"Unhealthy", "Liveness probe failed", "Readiness probe failed", "failed liveness probe, will be restarted"} {
		if !strings.Contains(ev, want) {
			t.Errorf("events lack %q:\n%s", want, ev)
		}
	}
}

// TestE2EAgentctl covers the CLI's commands and output formats.
func TestE2EAgentctl(t *testing.T) {
	a := newAgent(t, nil)
	// Before agentd runs, agentctl says what to do.
	out, err := a.try("get", "pods")
	if err == nil || !strings.Contains(out, "cannot connect to agentd at "+a.socket+": is it running?") {
		t.Errorf("agentctl without agentd: %v %s", err, out)
	}
	a.start()
	a.write("crash.yaml", simplePod("crash", "echo run; echo oops >&2; exit 3"))
	a.write("chatty.yaml", simplePod("chatty", "trap 'exit 0' TERM; for i in 1 2 3 4 5; do echo line $i; done; while true; do sleep 0.2 & wait; done"))
	a.write("two.yaml", `apiVersion: v1
kind: Pod
metadata: {name: two, namespace: other}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: a, image: localhost/busybox:latest, imagePullPolicy: Never, command: ["sleep", "1000"]}
  - {name: b, image: localhost/busybox:latest, imagePullPolicy: Never, command: ["sleep", "1000"]}
`)
	a.write("noimage.yaml", strings.Replace(simplePod("noimage", "true"), "localhost/busybox:latest", "localhost/missing:1.0", 1))
	a.waitStatus("chatty", "Running", 30*time.Second)
	a.waitStatus("crash", "CrashLoopBackOff", 30*time.Second)
	a.waitStatus("noimage", "ErrImageNeverPull", 30*time.Second)
	a.eventually(30*time.Second, "two 2/2", func() (bool, string) {
		out, _ := a.try("get", "pods", "-n", "other", "--no-headers")
		return strings.Contains(out, "2/2"), out
	})

	table := a.ctl("get", "pods")
	if !strings.HasPrefix(table, "NAME") || !strings.Contains(table, "READY") || !strings.Contains(table, "RESTARTS") || strings.Contains(table, "two") {
		t.Errorf("get pods:\n%s", table)
	}
	if out := a.ctl("get", "pods", "-A"); !strings.Contains(out, "NAMESPACE") || !strings.Contains(out, "other") || !strings.Contains(out, "2/2") {
		t.Errorf("get pods -A:\n%s", out)
	}
	if out := a.ctl("get", "pods", "-n", "other", "-o", "wide"); !strings.Contains(out, "IP") || !strings.Contains(out, "NODE") {
		t.Errorf("-o wide:\n%s", out)
	}
	if out := a.ctl("get", "pods", "-o", "name"); !strings.Contains(out, "pod/chatty\n") {
		t.Errorf("-o name:\n%s", out)
	}
	var list corev1.PodList
	if err := json.Unmarshal([]byte(a.ctl("get", "pods", "-o", "json")), &list); err != nil || len(list.Items) != 3 {
		t.Fatalf("-o json: %v, %d items", err, len(list.Items))
	}
	for _, p := range list.Items {
		if p.Status.StartTime == nil || len(p.Status.ContainerStatuses) == 0 || p.Status.Phase == "" {
			t.Errorf("%s has no real status: %+v", p.Name, p.Status)
		}
	}
	var one corev1.Pod
	if err := yaml.Unmarshal([]byte(a.ctl("get", "pods", "crash", "-o", "yaml")), &one); err != nil || one.Name != "crash" ||
		one.Status.ContainerStatuses[0].LastTerminationState.Terminated == nil ||
		one.Status.ContainerStatuses[0].LastTerminationState.Terminated.ExitCode != 3 {
		t.Errorf("-o yaml: %v %+v", err, one.Status)
	}

	// logs: --tail, --timestamps, --previous, -c.
	a.eventually(30*time.Second, "five lines", func() (bool, string) {
		out, _ := a.try("logs", "chatty")
		return strings.Count(out, "line ") == 5, out
	})
	if out := a.ctl("logs", "chatty", "--tail", "2"); out != "line 4\nline 5\n" {
		t.Errorf("--tail 2: %q", out)
	}
	if out := a.ctl("logs", "chatty", "--tail", "1", "--timestamps"); !strings.HasSuffix(out, "Z line 5\n") || !strings.HasPrefix(out, "20") {
		t.Errorf("--timestamps: %q", out)
	}
	a.eventually(20*time.Second, "a previous run", func() (bool, string) {
		out, err := a.try("logs", "crash", "--previous")
		return err == nil && strings.Contains(out, "run") && strings.Contains(out, "oops"), out
	})
	// Without -c, as kubectl: the first container, saying so on stderr.
	if out := a.ctl("logs", "two", "-n", "other"); out != "Defaulted container \"a\" out of: a, b\n" {
		t.Errorf("logs of a two-container pod without -c: %q", out)
	}
	if out := a.ctl("exec", "two", "-n", "other", "--", "echo", "hi"); out != "Defaulted container \"a\" out of: a, b\nhi\n" {
		t.Errorf("exec in a two-container pod without -c: %q", out)
	}
	a.ctl("logs", "two", "-n", "other", "-c", "b")

	// exec: output, exit code, stdin.
	if out := a.ctl("exec", "chatty", "--", "sh", "-c", "echo in-container $HOSTNAME"); out != "in-container chatty\n" {
		t.Errorf("exec: %q", out)
	}
	if out, err := a.try("exec", "chatty", "--", "sh", "-c", "exit 7"); err == nil || !strings.Contains(out, "exit code 7") {
		t.Errorf("exec exit code: %v %q", err, out)
	}
	// stdin's end is not the client's: the command reads to EOF and goes on (a
	// client that goes away gets its command killed).
	in := a.command("exec", "-i", "chatty", "--", "sh", "-c", "cat; echo after-eof")
	in.Stdin = strings.NewReader("piped\n")
	if out, err := in.CombinedOutput(); err != nil || string(out) != "piped\nafter-eof\n" {
		t.Errorf("exec -i with stdin closed: %v %q", err, out)
	}

	// describe, events, info, version.
	desc := a.ctl("describe", "pod", "crash")
	for _, want := range []string{"Name:", "crash", "Containers:", "Last State:", "Exit Code:    3", "Restart Count:", "Events:", "BackOff"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
	if out := a.ctl("describe", "pod", "noimage"); !strings.Contains(out, "ErrImageNeverPull") || !strings.Contains(out, `Container image "localhost/missing:1.0" is not present with pull policy of Never`) {
		t.Errorf("describe noimage:\n%s", out)
	}
	if ev := a.ctl("get", "events"); !strings.Contains(ev, "LAST SEEN") || !strings.Contains(ev, "pod/crash") {
		t.Errorf("get events:\n%s", ev)
	}
	if info := a.ctl("info"); !strings.Contains(info, "Live Restore Enabled: false") || !strings.Contains(info, "Storage Driver:") {
		t.Errorf("info:\n%s", info)
	}
	if v := a.ctl("version"); !strings.Contains(v, "Client Version:") || !strings.Contains(v, "Server Version:") {
		t.Errorf("version:\n%s", v)
	}
	if out := a.ctl("get", "images"); !strings.Contains(out, "localhost/busybox") {
		t.Errorf("get images:\n%s", out)
	}
	if out := a.ctl("completion", "bash"); !strings.Contains(out, "agentctl") {
		t.Errorf("completion")
	}
	if out, err := a.try("get", "pods", "nosuch"); err == nil || !strings.Contains(out, `pods "nosuch" not found`) {
		t.Errorf("get missing pod: %v %s", err, out)
	}
}

// TestE2EWatch: `get pods -w` prints a row when a pod changes.
func TestE2EWatch(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	cmd := a.command("get", "pods", "-w")
	var buf testutil.SyncBuffer
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Signal(unix.SIGTERM); _ = cmd.Wait() }()
	a.write("w.yaml", simplePod("w", "sleep 1000"))
	a.eventually(30*time.Second, "watch shows w Running", func() (bool, string) {
		s := buf.String()
		return strings.Contains(s, "w ") && strings.Contains(s, "Running"), s
	})
}

// TestE2EGracefulStop: removing a pod whose container ignores TERM takes its grace
// period, then KILL; stopping agentd (live restore off) stops all pods in parallel.
func TestE2EGracefulStop(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	// Each container ignores TERM but records when it came: it touches a file named for its pod in a host directory,
	// and the kernel sets the file's mtime. Those times, not how long the test waited, show what was parallel.
	marks := filepath.Join(a.dir, "term")
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	stubborn := func(name string) string {
		return simplePod(name, "trap 'echo got TERM; touch /term/$HOSTNAME' TERM; echo up; while true; do sleep 0.2 & wait; done",
			fmt.Sprintf("  volumes: [{name: term, hostPath: {path: %s, type: Directory}}]", marks)) +
			"    volumeMounts: [{name: term, mountPath: /term}]\n"
	}
	termAt := func(name string) time.Time {
		t.Helper()
		st, err := os.Stat(filepath.Join(marks, name))
		if err != nil {
			t.Fatalf("%s recorded no TERM: %v", name, err)
		}
		return st.ModTime()
	}
	const grace = 3 * time.Second // simplePod's terminationGracePeriodSeconds
	for _, n := range []string{"s1", "s2", "s3"} {
		a.write(n+".yaml", stubborn(n))
	}
	for _, n := range []string{"s1", "s2", "s3"} {
		a.waitStatus(n, "Running", 30*time.Second)
	}
	_ = os.Remove(filepath.Join(a.manifest, "s1.yaml"))
	a.waitGone("s1", 45*time.Second)
	// A loaded machine only makes the stop look longer: the grace period is a lower bound on what is measured here.
	if since := time.Since(termAt("s1")); since < grace {
		t.Errorf("s1 was gone %v after its TERM; want it to have had its %v grace period", since, grace)
	}
	took := a.stop(unix.SIGTERM, 60*time.Second)
	if took < grace {
		t.Errorf("agentd stop took %v: want the pods' %v grace period", took, grace)
	}
	// One stop after the other would TERM the second pod only after the first one's grace period had run out.
	gap := termAt("s2").Sub(termAt("s3")).Abs()
	t.Logf("agentd stop took %v; s2 and s3 got TERM %v apart", took.Round(time.Millisecond), gap.Round(time.Millisecond))
	if gap >= grace {
		t.Errorf("s2 and s3 got TERM %v apart: the pods were not stopped in parallel", gap)
	}
	if monitors, _ := os.ReadDir(filepath.Join(a.dir, "run", "monitors")); len(monitors) != 0 {
		t.Errorf("monitors left after a stop without live restore: %d", len(monitors))
	}
}

func (a *agent) command(args ...string) *exec.Cmd {
	c := exec.Command(filepath.Join(a.bin, "agentctl"), args...)
	c.Env = append(os.Environ(), "AGENT_SOCKET="+a.socket)
	return c
}

// TestE2EHooksVolumesSecurity: postStart and preStop hooks run, a hostPath volume is
// created (DirectoryOrCreate) and shared with the host, securityContext applies.
func TestE2EHooksVolumesSecurity(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	host := filepath.Join(a.dir, "hostdir")
	a.write("hooks.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hooks}
spec:
  terminationGracePeriodSeconds: 5
  volumes:
  - {name: h, hostPath: {path: %s, type: DirectoryOrCreate}}
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; id -u; id -g; touch /rootfs-file 2>/dev/null || echo read-only-rootfs; while true; do sleep 0.1 & wait; done"]
    volumeMounts: [{name: h, mountPath: /h}]
    lifecycle:
      postStart: {exec: {command: ["sh", "-c", "echo post > /h/post"]}}
      preStop: {exec: {command: ["sh", "-c", "echo pre > /h/pre"]}}
    securityContext:
      runAsUser: 0
      readOnlyRootFilesystem: true
  - name: user
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; echo uid=$(id -u) gid=$(id -g); while true; do sleep 0.1 & wait; done"]
    securityContext: {runAsUser: 1000, runAsGroup: 2000, allowPrivilegeEscalation: false}
`, host))
	a.waitStatus("hooks", "Running", 30*time.Second)
	a.eventually(30*time.Second, "postStart ran", func() (bool, string) {
		b, err := os.ReadFile(filepath.Join(host, "post"))
		return err == nil && string(b) == "post\n", string(b)
	})
	a.eventually(30*time.Second, "security context", func() (bool, string) {
		main, _ := a.try("logs", "hooks", "-c", "main")
		user, _ := a.try("logs", "hooks", "-c", "user")
		return strings.Contains(main, "read-only-rootfs") && strings.Contains(user, "uid=1000 gid=2000"), main + user
	})
	if out := a.ctl("exec", "hooks", "-c", "user", "--", "grep", "NoNewPrivs", "/proc/self/status"); !strings.Contains(out, "1") {
		t.Errorf("allowPrivilegeEscalation: false did not set no_new_privs: %q", out)
	}
	_ = os.Remove(filepath.Join(a.manifest, "hooks.yaml"))
	a.waitGone("hooks", 30*time.Second)
	if b, err := os.ReadFile(filepath.Join(host, "pre")); err != nil || string(b) != "pre\n" {
		t.Errorf("preStop did not run: %v %q", err, b)
	}
}

// TestE2EStopWhileStarting: SIGTERM (live restore off) while pods are still being
// started leaves nothing running: starts under way finish, then everything stops.
func TestE2EStopWhileStarting(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	for i := 0; i < 10; i++ {
		a.write(fmt.Sprintf("burst-%d.yaml", i), simplePod(fmt.Sprintf("burst-%d", i), "trap 'exit 0' TERM; while true; do sleep 0.1 & wait; done"))
	}
	a.eventually(30*time.Second, "some pods starting", func() (bool, string) {
		entries, _ := os.ReadDir(filepath.Join(a.dir, "run", "monitors"))
		return len(entries) > 0, ""
	})
	a.stop(unix.SIGTERM, 60*time.Second)
	if entries, _ := os.ReadDir(filepath.Join(a.dir, "run", "monitors")); len(entries) != 0 {
		t.Errorf("%d monitors left after a stop during start-up", len(entries))
	}
	if entries, _ := os.ReadDir(filepath.Join(a.dir, "run", "pods")); len(entries) != 0 {
		t.Errorf("%d pod sandboxes left after a stop during start-up", len(entries))
	}
	if strings.Contains(a.stderr.String(), "Could not record pod") {
		t.Errorf("a pod was torn down under a start:\n%s", a.stderr)
	}
}
