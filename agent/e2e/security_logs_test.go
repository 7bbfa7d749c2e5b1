package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// logPlant is something a pod with a writable hostPath over log-dir puts in its own
// log directory so that its monitor, root on the host, writes its output elsewhere
// the next time it opens a log: after the container exits and restarts.
type logPlant struct {
	name string
	// script runs in the container, with /logs the host's log-dir; $CANARY_FILE is the
	// canary file's host path, $CANARY_DIR the canary directory's. Runs 1 to 30 find it.
	script string
	// planted checks on the host that the plant is there (so the test is not vacuous).
	planted func(podDir string) error
}

func lstatIs(path string, mode os.FileMode) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Type() != mode {
		return fmt.Errorf("%s is %v, want type %v", path, fi.Mode(), mode)
	}
	return nil
}

var logPlants = []logPlant{
	{"link-file", `cd /logs/default_link-file_*/main && for i in $(seq 1 30); do ln -sfn $CANARY_FILE $i.log; done`,
		func(pd string) error { return lstatIs(filepath.Join(pd, "main", "1.log"), os.ModeSymlink) }},
	{"link-dir", `cd /logs/default_link-dir_* && { [ -L main ] || { mv main main.run0 && ln -s $CANARY_DIR main; }; }`,
		func(pd string) error { return lstatIs(filepath.Join(pd, "main"), os.ModeSymlink) }},
	{"link-pod", `cd /logs && for p in default_link-pod_*; do case $p in *.run0) ;; *) [ -L $p ] || { mv $p $p.run0 && ln -s $CANARY_DIR $p; } ;; esac; done`,
		func(pd string) error { return lstatIs(pd, os.ModeSymlink) }},
	{"hardlink", `cd /logs/default_hardlink_*/main && for i in $(seq 1 30); do ln -f /logs/neighbour.log $i.log; done`,
		func(pd string) error {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(pd, "main", "1.log"), &st); err != nil || st.Nlink < 2 {
				return fmt.Errorf("1.log is not a hard link: %v, %d links", err, st.Nlink)
			}
			return nil
		}},
	{"fifo", `cd /logs/default_fifo_*/main && for i in $(seq 1 30); do [ -p $i.log ] || mkfifo $i.log; done`,
		func(pd string) error { return lstatIs(filepath.Join(pd, "main", "1.log"), os.ModeNamedPipe) }},
	// 1:3 is /dev/null: opened, it would swallow the output and show the open.
	{"device", `cd /logs/default_device_*/main && for i in $(seq 1 30); do [ -c $i.log ] || mknod $i.log c 1 3; done`,
		func(pd string) error {
			return lstatIs(filepath.Join(pd, "main", "1.log"), os.ModeDevice|os.ModeCharDevice)
		}},
}

// TestE2ELogDirPlantsRefused (issue 10, item 5): pods with a writable hostPath
// volume over log-dir plant, in their own log directories, a symlink to a host file
// as the next log file, a symlink to a host directory as the container's or the
// pod's log directory, a hard link to another log, a FIFO or a device node; then
// they exit and restart (restartPolicy Always), so their monitors open new logs. The
// host file, directory and the other log stay untouched, the output is counted as
// dropped, every monitor answers status within 2 s, and `agentctl logs` prints
// nothing of the host file.
func TestE2ELogDirPlantsRefused(t *testing.T) {
	a := newAgent(t, nil)
	logDir := filepath.Join(a.dir, "logs")
	canaries, err := os.MkdirTemp("", "e2e-canary-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(canaries) })
	canaryFile, canaryDir := filepath.Join(canaries, "host-file"), filepath.Join(canaries, "host-dir")
	const canaryText = "2026-01-01T00:00:00Z stdout F host file: never written by a monitor\n"
	if err := os.WriteFile(canaryFile, []byte(canaryText), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(canaryDir, 0o755); err != nil {
		t.Fatal(err)
	}
	a.start()
	neighbour := filepath.Join(logDir, "neighbour.log")
	const neighbourText = "2026-01-01T00:00:00Z stdout F another pod's log\n"
	if err := os.WriteFile(neighbour, []byte(neighbourText), 0o640); err != nil {
		t.Fatal(err)
	}

	for _, pl := range logPlants {
		// Runs 0 and 1 exit at once; run 2 keeps running, so that its monitor is
		// not in the middle of a restart when asked for its status.
		script := "CANARY_FILE=" + canaryFile + " CANARY_DIR=" + canaryDir + "; " + pl.script +
			"; echo output-of-" + pl.name + "; n=$(cat /logs/runs-" + pl.name + " 2>/dev/null | wc -l); echo run >> /logs/runs-" + pl.name +
			"; [ $n -ge 2 ] || exit 1; trap 'exit 0' TERM; while true; do sleep 0.1 & wait; done"
		a.write(pl.name+".yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 3
  volumes:
  - {name: logs, hostPath: {path: %s, type: Directory}}
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", %q]
    volumeMounts: [{name: logs, mountPath: /logs}]
`, pl.name, logDir, script))
	}

	var firstLog string
	for _, pl := range logPlants {
		var p = a.pod(pl.name)
		a.eventually(90*time.Second, pl.name+" started", func() (bool, string) {
			p = a.pod(pl.name)
			return p != nil && p.UID != "", fmt.Sprint(p)
		})
		podDir := filepath.Join(logDir, "default_"+pl.name+"_"+string(p.UID))
		// Runs 1 and 2 opened logs after the plant; run 1's output was dropped.
		a.eventually(120*time.Second, pl.name+" restarted twice with its output dropped", func() (bool, string) {
			j, _, err := a.monitorStatus(p, "main")
			if err != nil {
				return false, err.Error()
			}
			first, _ := exec.Command("sh", "-c", "cat "+podDir+"*/main/0.log").CombinedOutput()
			return len(j.Runs) >= 3 && j.State == protocol.StateRunning && j.DroppedLog > 0,
				fmt.Sprintf("%d runs, %s, %d bytes dropped; the first run said:\n%s", len(j.Runs), j.State, j.DroppedLog, first)
		})
		if err := pl.planted(podDir); err != nil {
			t.Errorf("%s: the pod's plant is not there, so this proves nothing: %v", pl.name, err)
		}
		if pl.name == "link-file" {
			firstLog = filepath.Join(podDir, "main", "0.log")
		}
		took := a.requireStatusWithin(p, "main", 2*time.Second)
		t.Logf("%s: the monitor answered status in %v", pl.name, took)
		out, err := a.try("logs", pl.name)
		if strings.Contains(out, "host file") || strings.Contains(out, "another pod") {
			t.Errorf("agentctl logs %s printed a host file: %v\n%s", pl.name, err, out)
		}
		if err == nil && strings.TrimSpace(out) != "" {
			t.Errorf("agentctl logs %s printed %q from a planted log", pl.name, out)
		}
	}

	// The pods go as pods go, through their manifests.
	for _, pl := range logPlants {
		if err := os.Remove(filepath.Join(a.manifest, pl.name+".yaml")); err != nil {
			t.Fatal(err)
		}
	}
	for _, pl := range logPlants {
		a.waitGone(pl.name, 90*time.Second)
	}

	if data, err := os.ReadFile(canaryFile); err != nil || string(data) != canaryText {
		t.Errorf("the host file was written to: %q %v", data, err)
	}
	if ents, err := os.ReadDir(canaryDir); err != nil || len(ents) > 0 {
		t.Errorf("the host directory was written to: %v %v", ents, err)
	}
	if data, err := os.ReadFile(neighbour); err != nil || string(data) != neighbourText {
		t.Errorf("another log was appended to through a hard link: %q %v", data, err)
	}
	// Run 0 opened its log before anything was planted, and logged normally.
	if data, err := os.ReadFile(firstLog); err != nil || !strings.Contains(string(data), "output-of-link-file") {
		t.Errorf("the first run's log %s: %q %v", firstLog, data, err)
	}
}

// monitorSocket returns the path of a container's control socket.
func (a *agent) monitorSocket(p *corev1.Pod, container string) string {
	return filepath.Join(a.dir, "run", "monitors", string(p.UID)+"_"+container, protocol.SocketFile)
}

// monitorStatus asks a container's monitor for its status over the control socket,
// as agentd does, and returns how long the answer took.
func (a *agent) monitorStatus(p *corev1.Pod, container string) (*protocol.Journal, time.Duration, error) {
	start := time.Now()
	sock := a.monitorSocket(p, container)
	addr, done, err := protocol.SocketAddr(filepath.Dir(sock))
	if err != nil {
		return nil, 0, err
	}
	defer done()
	c, err := net.DialTimeout("unix", addr, 10*time.Second)
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	var reply protocol.HelloReply
	var resp protocol.Response
	for _, step := range []struct{ send, recv any }{
		{&protocol.Hello{Protocol: protocol.Name, Major: protocol.Major, Minor: protocol.Minor}, &reply},
		{&protocol.Request{Op: protocol.OpStatus}, &resp},
	} {
		data, _ := json.Marshal(step.send)
		if _, err := c.Write(append(data, '\n')); err != nil {
			return nil, 0, err
		}
		line, err := r.ReadBytes('\n')
		if err != nil {
			return nil, 0, err
		}
		if err := json.Unmarshal(line, step.recv); err != nil {
			return nil, 0, err
		}
	}
	if resp.Error != nil {
		return nil, 0, fmt.Errorf("status: %s", resp.Error.Message)
	}
	return resp.Journal, time.Since(start), nil
}

// requireStatusWithin fails the test unless the monitor answers status within limit.
func (a *agent) requireStatusWithin(p *corev1.Pod, container string, limit time.Duration) time.Duration {
	a.t.Helper()
	j, took, err := a.monitorStatus(p, container)
	if err != nil {
		a.t.Fatalf("%s: monitor status: %v", p.Name, err)
	}
	if took > limit {
		a.t.Errorf("%s: the monitor took %v to answer status, more than %v", p.Name, took, limit)
	}
	if j.ID != string(p.UID)+"_"+container {
		a.t.Errorf("%s: the monitor answered for %s", p.Name, j.ID)
	}
	return took
}
