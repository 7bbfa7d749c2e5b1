package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Attacks through a pod's manifest and its running containers on the host (issue
// 10): each must fail with a clear event or status, and leave the host untouched.

// TestE2EUnsafePodIdentifiers: a metadata.uid, container name, namespace, volume
// name or image that would lead out of run-dir, root and log-dir (or reads as a path)
// is refused with an InvalidManifest event naming the file and the field; nothing is
// created or removed outside agentd's directories, and other pods run on.
func TestE2EUnsafePodIdentifiers(t *testing.T) {
	a := newAgent(t, nil)
	// Where "../../x" and friends would land from run-dir/pods/<uid>,
	// root/pods/<uid> and log-dir/<ns>_<pod>_<uid>: canaries that must stay as they are.
	canary := filepath.Join(a.dir, "canary")
	if err := os.MkdirAll(canary, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(canary, "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Outside everything, with a name of this run's own.
	escape := fmt.Sprintf("/tmp/agentd-e2e-uid-escape-%d-%d", os.Getpid(), time.Now().UnixNano())
	a.start()
	a.write("good.yaml", simplePod("good", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"))
	withUID := func(name, uid string) string {
		return strings.Replace(simplePod(name, "sleep 1000"), "  name: "+name+"\n", fmt.Sprintf("  name: %s\n  uid: %q\n", name, uid), 1)
	}
	bad := []struct {
		file, manifest, want string // want: the start of the event's field error
	}{
		{"dotdot.yaml", withUID("dotdot", "../../canary"), `metadata.uid: Invalid value: "../../canary"`},
		{"deeper.yaml", withUID("deeper", "../../../../../.."+escape), "metadata.uid: Invalid value"},
		{"absolute.yaml", withUID("absolute", escape), "metadata.uid: Invalid value"},
		{"parent.yaml", withUID("parent", ".."), `metadata.uid: Invalid value: ".."`},
		{"slash.yaml", withUID("slash", "a/b"), `metadata.uid: Invalid value: "a/b"`},
		{"image.yaml", strings.Replace(simplePod("image", "sleep 1000"), "image: localhost/busybox:latest", `image: "../../canary"`, 1),
			`spec.containers[0].image: Invalid value: "../../canary"`},
		{"image-inside.yaml", strings.Replace(simplePod("image-inside", "sleep 1000"), "image: localhost/busybox:latest", `image: "localhost/../../canary:1"`, 1),
			`spec.containers[0].image: Invalid value: "localhost/../../canary:1"`},
		{"container.yaml", strings.Replace(simplePod("container", "sleep 1000"), "  - name: main\n", "  - name: \"../canary\"\n", 1),
			`spec.containers[0].name: Invalid value: "../canary"`},
		{"namespace.yaml", strings.Replace(simplePod("namespace", "sleep 1000"), "  name: namespace\n", "  name: namespace\n  namespace: \"../canary\"\n", 1),
			`metadata.namespace: Invalid value: "../canary"`},
		{"volume.yaml", simplePod("volume", "sleep 1000", `  volumes: [{name: "../canary", emptyDir: {}}]`),
			`spec.volumes[0].name: Invalid value: "../canary"`},
	}
	for _, b := range bad {
		a.write(b.file, b.manifest)
	}
	a.waitStatus("good", "Running", 60*time.Second)
	a.eventually(20*time.Second, "an InvalidManifest event naming the field for every bad file", func() (bool, string) {
		out := a.ctl("get", "events", "-o", "json")
		var events corev1.EventList
		if err := json.Unmarshal([]byte(out), &events); err != nil {
			t.Fatalf("get events -o json: %v\n%s", err, out)
		}
		for _, b := range bad {
			found := false
			for _, e := range events.Items {
				found = found || e.Reason == "InvalidManifest" && strings.Contains(e.Message, b.file) && strings.Contains(e.Message, b.want)
			}
			if !found {
				return false, "no event for " + b.file + " with " + b.want + " in\n" + out
			}
		}
		return true, ""
	})
	for _, p := range a.pods() {
		if p.Name != "good" {
			t.Errorf("pod %s with an unsafe identifier was accepted (uid %s)", p.Name, p.UID)
		}
	}
	if _, err := os.Stat(escape); err == nil {
		t.Errorf("%s was created", escape)
	}
	entries, _ := os.ReadDir(canary)
	if len(entries) != 1 || entries[0].Name() != "keep" {
		t.Errorf("canary directory changed: %v", entries)
	}
	// Beside run-dir, root and log-dir nothing new.
	top, _ := os.ReadDir(a.dir)
	var names []string
	for _, e := range top {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "canary config.json logs manifests root run" {
		t.Errorf("the agent's directory holds %s, want canary config.json logs manifests root run", got)
	}
}

// TestE2ESubPathSymlinkSwap: a container replaces the subPath of its own volume
// with a symlink (to "/", to a host directory) and exits; the restarted container
// must get the subPath resolved inside the volume, never the host's files (the class
// of CVE-2017-1002101 and CVE-2021-25741).
func TestE2ESubPathSymlinkSwap(t *testing.T) {
	a := newAgent(t, nil)
	hostDir := filepath.Join(a.dir, "host-secret")
	if err := os.MkdirAll(hostDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostDir, "secret-canary"), []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The file the second run writes has a name of this run's own, so that a
	// file left on the host by anything earlier cannot pass for one written now.
	pwned := fmt.Sprintf("pwned-%d-%d", os.Getpid(), time.Now().UnixNano())
	a.start()
	// First run: /mnt is the subPath "sub"; the container swaps "sub" for a
	// symlink and exits 1. A second run lists /mnt and tries to write through it.
	swapPod := func(name, target string) string {
		script := `if [ -e /vol/swapped ]; then echo "second run"; ls -a /mnt; echo pwned > /mnt/` + pwned + `; echo listed; while true; do sleep 0.2 & wait; done; fi
echo "first run"; rm -rf /vol/sub; ln -s ` + target + ` /vol/sub; touch /vol/swapped; exit 1`
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: data
    emptyDir: {}
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
    volumeMounts:
    - {name: data, mountPath: /vol}
    - {name: data, mountPath: /mnt, subPath: sub}
`, name, script)
	}
	a.write("swap-root.yaml", swapPod("swap-root", "/"))
	a.write("swap-dir.yaml", swapPod("swap-dir", hostDir))

	// "/" resolves to the volume's own root: the second run sees the volume.
	var logs string
	a.eventually(60*time.Second, "swap-root's second run lists its subPath", func() (bool, string) {
		logs, _ = a.try("logs", "swap-root")
		return strings.Contains(logs, "listed"), logs + "\n" + a.show("describe", "pod", "swap-root")
	})
	for _, line := range strings.Split(logs, "\n") {
		switch strings.TrimSpace(line) {
		case "proc", "sys", "usr", "etc":
			t.Errorf("the restarted container saw the host root through its subPath:\n%s", logs)
		}
	}
	if !strings.Contains(logs, "swapped") {
		t.Errorf("the subPath swapped for / is not the volume's root:\n%s", logs)
	}
	p := a.pod("swap-root")
	vol := filepath.Join(a.dir, "root", "pods", string(p.UID), "volumes", "data")
	if _, err := os.Stat(filepath.Join(vol, pwned)); err != nil {
		t.Errorf("the write through the subPath swapped for / did not land in the volume's root: %v", err)
	}

	// A symlink to a host directory resolves inside the volume, where nothing is
	// there: the start fails with a clear reason, again and again, and the monitor
	// keeps answering.
	a.eventually(60*time.Second, "swap-dir's restart refused", func() (bool, string) {
		p := a.pod("swap-dir")
		if p == nil || len(p.Status.ContainerStatuses) == 0 {
			return false, ""
		}
		cs := p.Status.ContainerStatuses[0]
		last := cs.LastTerminationState.Terminated
		return cs.RestartCount >= 2 && last != nil && last.Reason == "StartError" && strings.Contains(last.Message, `subPath "sub"`), fmt.Sprintf("%+v", cs)
	})
	start := time.Now()
	a.ctl("get", "pods", "swap-dir")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("status took %v", d)
	}

	for _, f := range []string{filepath.Join(hostDir, pwned), "/" + pwned} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("the container wrote %s on the host", f)
		}
	}
	if entries, _ := os.ReadDir(hostDir); len(entries) != 1 {
		t.Errorf("host directory changed: %v", entries)
	}
}

// TestE2ETerminationMessage: the default /dev/termination-log works; a container
// that turns its termination-log path into a FIFO or a device node neither blocks
// its monitor nor reads anything of the host into its status.
func TestE2ETerminationMessage(t *testing.T) {
	a := newAgent(t, nil)
	a.start()
	a.write("msg.yaml", simplePod("msg", "echo -n 'goodbye from msg' > /dev/termination-log; exit 3", "  restartPolicy: Never"))
	hostile := `for p in /dev/termination-log /tmp/msg; do rm -f $p; done
mkfifo /dev/termination-log 2>&1; mknod /dev/termination-log b 8 0 2>&1; mknod /dev/termination-log c 1 1 2>&1
mkfifo /tmp/msg 2>&1; echo tried; exit 1`
	a.write("hostile.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: hostile
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
    terminationMessagePolicy: FallbackToLogsOnError
  - name: fifo
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "rm -f /tmp/msg; mkfifo /tmp/msg; echo made; exit 1"]
    terminationMessagePath: /tmp/msg
`, hostile))

	a.eventually(60*time.Second, "msg's termination message", func() (bool, string) {
		p := a.pod("msg")
		if p == nil || len(p.Status.ContainerStatuses) == 0 {
			return false, ""
		}
		term := p.Status.ContainerStatuses[0].State.Terminated
		return term != nil && term.ExitCode == 3 && term.Message == "goodbye from msg", fmt.Sprintf("%+v", p.Status.ContainerStatuses[0])
	})

	// The hostile container keeps being restarted, its status answers at once, and
	// its message is empty (nothing was read from the device or the FIFO).
	a.eventually(90*time.Second, "hostile restarted twice", func() (bool, string) {
		start := time.Now()
		out, err := a.try("get", "pods", "hostile", "-o", "json")
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("get pods took %v", d)
		}
		var p corev1.Pod
		if err != nil || json.Unmarshal([]byte(out), &p) != nil || len(p.Status.ContainerStatuses) < 2 {
			return false, out
		}
		for _, cs := range p.Status.ContainerStatuses {
			for _, st := range []corev1.ContainerState{cs.State, cs.LastTerminationState} {
				// FallbackToLogsOnError: the log's end, never the host's data.
				if st.Terminated != nil && st.Terminated.Message != "" && !strings.Contains(st.Terminated.Message, "tried") && !strings.Contains(st.Terminated.Message, "made") {
					t.Errorf("container %s's termination message is %q", cs.Name, st.Terminated.Message)
				}
			}
			if cs.RestartCount < 2 {
				return false, out
			}
		}
		return true, out
	})
	logs := a.ctl("logs", "hostile", "-c", "main")
	if !strings.Contains(logs, "tried") {
		t.Errorf("hostile container did not run its attempts: %s", logs)
	}
}

// TestE2EImageUserLookupStaysInRootfs: an image whose /etc is a symlink to a host
// directory names its USER; the user must be looked up in the image's own files
// (inside its rootfs), never in the host directory the link names.
func TestE2EImageUserLookupStaysInRootfs(t *testing.T) {
	a := newAgent(t, nil)
	hostEtc := filepath.Join(a.dir, "hostetc")
	if err := os.MkdirAll(hostEtc, 0o755); err != nil {
		t.Fatal(err)
	}
	// What a lookup that followed the link on the host would find.
	if err := os.WriteFile(filepath.Join(hostEtc, "passwd"), []byte("app:x:6666:6666::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hostEtc, "group"), []byte("app:x:6666:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := strings.TrimPrefix(hostEtc, "/")
	archive := buildDerivedImage(t, a, "localhost/etclink:1", "app", map[string]string{
		"etc":           "symlink:/" + rel,
		rel + "/passwd": "root:x:0:0::/root:/bin/sh\napp:x:4242:4243::/:/bin/sh\n",
		rel + "/group":  "root:x:0:\napp:x:4243:\nextra:x:4244:app\n",
	})
	a.start()
	a.ctl("image", "import", archive)
	a.write("who.yaml", strings.Replace(simplePod("who", "echo ids $(id -u) $(id -g) $(id -G); while true; do sleep 0.2 & wait; done"), "localhost/busybox:latest", "localhost/etclink:1", 1))
	var logs string
	a.eventually(60*time.Second, "who prints its ids", func() (bool, string) {
		logs, _ = a.try("logs", "who")
		return strings.Contains(logs, "ids "), logs + "\n" + a.show("describe", "pod", "who")
	})
	if !strings.Contains(logs, "ids 4242 4243 4243 4244") {
		t.Errorf("user looked up outside the image's rootfs, or groups lost: %q (want ids 4242 4243 4243 4244; 6666 is the host's)", logs)
	}
	// An exec gets the same identity as the container.
	if out := a.ctl("exec", "who", "--", "id", "-u"); strings.TrimSpace(out) != "4242" {
		t.Errorf("exec runs as %q, want 4242", out)
	}
}
