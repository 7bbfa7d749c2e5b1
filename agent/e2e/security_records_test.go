package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// canaryCgroup is a cgroup outside every agentd's cgroup-parent, holding a
// process the test started. It is made in every hierarchy a process can join
// (not v1's cpuset, which needs cpus and mems first).
type canaryCgroup struct {
	path string
	dirs []string
	cmd  *exec.Cmd
	done chan error
}

func newCanaryCgroup(t *testing.T) *canaryCgroup {
	t.Helper()
	c := &canaryCgroup{path: fmt.Sprintf("/agentd-e2e-canary-%d-%d", os.Getpid(), time.Now().UnixNano())}
	var roots []string
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		roots = []string{"/sys/fs/cgroup"}
	} else {
		entries, _ := os.ReadDir("/sys/fs/cgroup")
		for _, e := range entries {
			p := filepath.Join("/sys/fs/cgroup", e.Name())
			if e.IsDir() && e.Name() != "cpuset" && unix.Statfs(p, &st) == nil && (st.Type == unix.CGROUP_SUPER_MAGIC || st.Type == unix.CGROUP2_SUPER_MAGIC) {
				roots = append(roots, p)
			}
		}
	}
	c.cmd = exec.Command("sleep", "100000")
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.done = make(chan error, 1)
	go func() { c.done <- c.cmd.Wait() }()
	t.Cleanup(func() {
		_ = c.cmd.Process.Kill() // by the pid this test started
		<-c.done
		for _, d := range c.dirs {
			_ = unix.Rmdir(d)
		}
	})
	for _, root := range roots {
		d := filepath.Join(root, c.path)
		if err := os.Mkdir(d, 0o755); err != nil {
			continue
		}
		c.dirs = append(c.dirs, d)
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(c.cmd.Process.Pid)), 0); err != nil {
			t.Fatalf("move the canary into %s: %v", d, err)
		}
	}
	if len(c.dirs) == 0 {
		t.Fatal("no cgroup hierarchy to make the canary cgroup in")
	}
	return c
}

// running reports whether the canary process has not exited; it is our child, so
// its pid is its own until we reap it.
func (c *canaryCgroup) running() bool {
	select {
	case err := <-c.done:
		c.done <- err
		return false
	default:
		return true
	}
}

// TestE2EHostileRecordsAtStart: monitor records planted in a stopped agentd's
// run-dir — cgroups outside cgroup-parent (a canary process runs in one), a
// cgroup that climbs out with "..", a config for another id, libcontainer state
// and logs in a directory outside agentd's, runs kept in one — are left alone by the live restore
// that finds them: the canary process runs on, the canary directories stay, the
// records that are not agentd's stay for the operator, and agentd comes up,
// keeps its adopted pod and runs a new one. A pod record rewritten to mount the
// canary directory as its emptyDir is not adopted: that pod starts afresh.
func TestE2EHostileRecordsAtStart(t *testing.T) {
	a := newAgent(t, map[string]any{"live-restore": true})
	a.start()
	a.write("p1.yaml", simplePod("p1", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"))
	a.waitStatus("p1", "Running", 60*time.Second)
	before := a.journal(a.pod("p1"), "main")
	a.write("p0.yaml", `apiVersion: v1
kind: Pod
metadata: {name: p0}
spec:
  terminationGracePeriodSeconds: 3
  volumes: [{name: data, emptyDir: {}}]
  containers:
  - name: main
    image: localhost/busybox:latest
    imagePullPolicy: Never
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"]
    volumeMounts: [{name: data, mountPath: /data}]
`)
	a.waitStatus("p0", "Running", 60*time.Second)
	p0 := a.pod("p0")
	p0Before := a.journal(p0, "main")
	a.stop(unix.SIGTERM, 30*time.Second)

	canary := newCanaryCgroup(t)
	// Outside run-dir, root and log-dir (all three are beside it in a.dir).
	canaryDir := filepath.Join(a.dir, "canary")
	runID := strings.Repeat("c0ffee", 10) + "abcd" // a container ID, 64 hex characters
	for _, d := range []string{filepath.Join(canaryDir, runID), filepath.Join(canaryDir, "logs")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "keep"), []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	run := filepath.Join(a.dir, "run")
	// p0's pod record, rewritten so that its emptyDir is the canary directory:
	// adopted as it stands, a restart of p0's container would mount it.
	recordFile := filepath.Join(run, "pods", string(p0.UID), "pod.json")
	data, err := os.ReadFile(recordFile)
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(data, &rec); err != nil {
		t.Fatal(err)
	}
	rec["sandbox"].(map[string]any)["Volumes"] = map[string]string{"data": canaryDir}
	if data, err = json.Marshal(rec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(recordFile, data, 0o600); err != nil {
		t.Fatal(err)
	}
	record := func(uid, name string) *protocol.ContainerConfig {
		return &protocol.ContainerConfig{
			ID: uid + "_" + name, Name: name,
			Pod:       protocol.PodRef{Namespace: "default", Name: "evil", UID: uid},
			Process:   protocol.Process{Args: []string{"sleep", "1"}, Cwd: "/"},
			StateRoot: filepath.Join(run, "libcontainer"),
			Cgroup: protocol.Cgroup{
				Path:        a.cgroupPrefix + "/pod-" + uid + "/" + name,
				MonitorPath: a.cgroupPrefix + "/monitors/" + uid + "_" + name,
			},
			Log:     protocol.LogConfig{Dir: filepath.Join(a.dir, "logs", "default_evil_"+uid, name), Root: filepath.Join(a.dir, "logs")},
			Restart: protocol.Restart{Policy: protocol.RestartAlways},
		}
	}
	planted := map[string]*protocol.ContainerConfig{}
	// The canary's cgroup, as the container's and the monitor's.
	c := record("evil", "outside")
	c.Cgroup.Path, c.Cgroup.MonitorPath = canary.path, canary.path
	planted[c.ID] = c
	// Climbing out of cgroup-parent.
	c = record("evil", "dotdot")
	c.Cgroup.Path = a.cgroupPrefix + "/../" + strings.TrimPrefix(canary.path, "/")
	planted[c.ID] = c
	// A record of another id, which names the canary's cgroup.
	c = record("evil", "otherid")
	c.ID, c.Cgroup.Path = "../../evil_x", canary.path
	planted["evil_otherid"] = c
	// libcontainer state and logs elsewhere: a clean-up would remove
	// <state root>/<run's container ID>, the canary directory's child.
	c = record("evil", "elsewhere")
	c.StateRoot, c.Log.Dir = canaryDir, filepath.Join(canaryDir, "logs")
	planted[c.ID] = c
	// Runs kept elsewhere: `agent-monitor kill` destroys the runs it finds in
	// the runs directory, here the canary directory's child.
	c = record("evil", "runs")
	c.Rootfs.RunsDir = canaryDir
	planted[c.ID] = c

	for id, cfg := range planted {
		dir := filepath.Join(run, protocol.MonitorsDir, id)
		if err := os.MkdirAll(filepath.Join(dir, protocol.RunsDir, runID), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := protocol.WriteConfig(dir, cfg); err != nil {
			t.Fatal(err)
		}
		// A monitor long gone (the canary's pid with another start time): agentd
		// takes it for dead and cleans up after it through its record.
		j := &protocol.Journal{ID: id, MonitorPid: canary.cmd.Process.Pid, MonitorStart: 1, State: protocol.StateRunning,
			Runs: []protocol.Run{{ContainerID: runID, Pid: canary.cmd.Process.Pid, PidStartTime: 1, StartedAt: time.Now()}}}
		if err := protocol.WriteJournal(dir, j); err != nil {
			t.Fatal(err)
		}
	}

	// agentd answers once its restore is done: what it did with the records is done.
	a.start()
	if !canary.running() {
		t.Errorf("the canary process in cgroup %s was killed", canary.path)
	}
	for _, d := range canary.dirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("the canary cgroup %s is gone: %v", d, err)
		}
	}
	for _, d := range []string{filepath.Join(canaryDir, runID, "keep"), filepath.Join(canaryDir, "logs", "keep")} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("canary file %s is gone: %v", d, err)
		}
	}
	log := a.stderr.String()
	for id := range planted {
		if !strings.Contains(log, "container="+id) || !strings.Contains(log, "record agentd did not make") {
			t.Errorf("agentd did not log that it refused the record of %s:\n%s", id, log)
		}
	}
	a.write("p2.yaml", simplePod("p2", "trap 'exit 0' TERM; while true; do sleep 0.2 & wait; done"))
	a.waitStatus("p2", "Running", 60*time.Second)
	if p := a.pod("p1"); p == nil || p.Status.ContainerStatuses[0].ContainerID != "agentd://"+before.Current().ContainerID {
		t.Errorf("p1 was not adopted as it ran:\n%s", a.ctl("get", "pods"))
	}
	// p0 is not adopted from its rewritten record: created afresh, with its own
	// emptyDir, not the canary directory.
	a.eventually(60*time.Second, "p0 created afresh", func() (bool, string) {
		p := a.pod("p0")
		if p == nil || p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 {
			return false, a.show("get", "pods")
		}
		id := p.Status.ContainerStatuses[0].ContainerID
		return p.Status.ContainerStatuses[0].Ready && id != "agentd://"+p0Before.Current().ContainerID, id
	})
	if out := a.ctl("exec", "p0", "--", "ls", "-a", "/data"); strings.Contains(out, runID) || strings.Contains(out, "logs") {
		t.Errorf("p0's /data is the canary directory its planted record named:\n%s", out)
	}
	if !strings.Contains(log, "Not adopting a pod record agentd did not make") {
		t.Errorf("agentd did not log that it refused p0's record:\n%s", log)
	}
	// Records of another identity, or with paths outside agentd's directories,
	// stay for the operator.
	for _, id := range []string{"evil_otherid", "evil_elsewhere"} {
		if _, err := os.Stat(filepath.Join(run, protocol.MonitorsDir, id, protocol.ConfigFile)); err != nil {
			t.Errorf("the record of %s was removed: %v", id, err)
		}
	}
}
