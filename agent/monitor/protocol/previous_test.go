package protocol

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// testdata/v1.0 holds files and messages as the landed monitor of protocol 1.0
// wrote and sent them (see its README). A newer agentd and a newer agent-monitor
// must read every one of them with nothing lost.

func readPrevious(t *testing.T, name string, v any) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "v1.0", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return data
}

// Every file decodes, and encodes again to the same JSON: no field is unknown to
// this version (it would be dropped) or written differently.
func TestDecodePreviousVersionLosesNothing(t *testing.T) {
	for name, v := range map[string]any{
		"config.json":              &ContainerConfig{},
		"config-init.json":         &ContainerConfig{},
		"config-start-error.json":  &ContainerConfig{},
		"journal.json":             &Journal{},
		"journal-init.json":        &Journal{},
		"journal-start-error.json": &Journal{},
		"hello-reply.json":         &HelloReply{},
		"response-status.json":     &Response{},
		"handoff.json":             &Handoff{},
		"sync-started.json":        &SyncMessage{},
		"sync-failed.json":         &SyncMessage{},
	} {
		t.Run(name, func(t *testing.T) {
			old := readPrevious(t, name, v)
			again, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			var want, got any
			if err := json.Unmarshal(old, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(again, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s does not survive a decode and encode:\nwas:   %s\nagain: %s", name, old, again)
			}
		})
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "v1.0"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(entries); n != 12 { // the 11 files above and the README
		t.Errorf("testdata/v1.0 holds %d files: decode each one here", n)
	}
}

func TestDecodePreviousVersion(t *testing.T) {
	var cfg ContainerConfig
	readPrevious(t, "config.json", &cfg)
	const uid = "3eab1127-805b-d6e2-8805-edf125d99288"
	pods := "/run/agent/pods/" + uid
	adj := 999
	wantCfg := ContainerConfig{
		ID:   uid + "_app",
		Name: "app",
		Pod:  PodRef{Namespace: "default", Name: "fixture", UID: uid},
		Image: ImageRef{Name: "localhost/busybox:latest",
			ID: "sha256:3617da9495ad95512b9c183b2c20f1a2fa8b7867138c00e1f3826032b3f9c639"},
		Rootfs: Rootfs{Layers: []string{"/var/lib/agent/images/layers/sha256/014687605f13a5c0be937ed9b715eda3f3382959686aa81b80c36988aaf41b9f"},
			Driver: "overlay"},
		Process: Process{
			Args: []string{"sh", "-c", "n=$(cat /data/n 2>/dev/null || echo 0); echo $((n+1)) > /data/n; " +
				"if [ $n -ge 2 ]; then exec sleep 3600; fi; echo failing run $n >&2; exit 3"},
			Env:             []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=fixture-host", "GREETING=hello"},
			Cwd:             "/data",
			UID:             1000,
			GID:             1000,
			AdditionalGIDs:  []uint32{2000},
			User:            "1000:1000",
			Capabilities:    []string{"CAP_NET_ADMIN"},
			NoNewPrivileges: true,
			OOMScoreAdj:     &adj,
		},
		Hostname:   "fixture-host",
		Namespaces: Namespaces{Net: pods + "/ns/net", IPC: pods + "/ns/ipc", UTS: pods + "/ns/uts"},
		Mounts: []Mount{
			{Source: pods + "/hosts", Destination: "/etc/hosts", Type: "bind", Options: []string{"rbind", "rprivate"}},
			{Source: pods + "/hostname", Destination: "/etc/hostname", Type: "bind", Options: []string{"rbind", "rprivate", "ro"}},
			{Source: pods + "/resolv.conf", Destination: "/etc/resolv.conf", Type: "bind", Options: []string{"rbind", "rprivate", "ro"}},
			{Source: pods + "/shm", Destination: "/dev/shm", Type: "bind", Options: []string{"rbind", "rprivate"}},
			{Source: "/var/lib/agent/pods/" + uid + "/volumes/data", Destination: "/data", SubPath: "app", Type: "bind",
				Options: []string{"rbind", "rprivate"}},
			{Source: pods + "/containers/app/termination-log", Destination: "/dev/termination-log", Type: "bind",
				Options: []string{"rbind", "rprivate"}},
		},
		Seccomp: "RuntimeDefault",
		Cgroup: Cgroup{Path: "/agent/pod-" + uid + "/app", MonitorPath: "/agent/monitors/" + uid + "_app",
			MemoryLimit: 64 << 20, CPUShares: 102, CPUQuota: 50000, CPUPeriod: 100000, PidsLimit: 4096},
		Log:     LogConfig{Dir: "/var/log/pods/default_fixture_" + uid + "/app", Root: "/var/log/pods", MaxSize: 10 << 20, MaxFiles: 5},
		Restart: Restart{Policy: RestartAlways, BackoffBase: 300 * time.Millisecond},
		Stop:    StopConfig{GracePeriod: 3 * time.Second},
		Termination: Termination{MessagePath: "/dev/termination-log", FallbackToLog: true,
			HostPath: pods + "/containers/app/termination-log"},
		StateRoot: "/run/agent/libcontainer",
	}
	if !reflect.DeepEqual(cfg, wantCfg) {
		t.Errorf("config.json:\n got %+v\nwant %+v", cfg, wantCfg)
	}

	var initCfg ContainerConfig
	readPrevious(t, "config-init.json", &initCfg)
	if initCfg.Restart.Policy != RestartOnFailure || initCfg.Name != "init" {
		t.Errorf("config-init.json: %s with policy %q, want init with OnFailure (pod: Always)", initCfg.Name, initCfg.Restart.Policy)
	}

	var hello HelloReply
	readPrevious(t, "hello-reply.json", &hello)
	wantHello := HelloReply{Protocol: Name, Major: 1, Minor: 0, Capabilities: []string{OpStatus, OpStop, OpSignal, OpKill, OpReopenLog, OpExec},
		MonitorVersion: "v-ff64825", ID: uid + "_app", Pid: 4200, StartTime: 900000}
	if !reflect.DeepEqual(hello, wantHello) || !Compatible(hello.Major) {
		t.Errorf("hello-reply.json = %+v, want %+v", hello, wantHello)
	}

	var h Handoff
	readPrevious(t, "handoff.json", &h)
	wantH := Handoff{StateDir: StateDir("/run/agent", uid+"_app"), Listener: 11, Lock: 4,
		Fat: "/usr/local/bin/agent-monitor", Lean: "/usr/local/bin/" + LeanBinary}
	if h != wantH {
		t.Errorf("handoff.json = %+v, want %+v", h, wantH)
	}

	// The sync messages of the init container's first run and of the broken
	// container's failed start name what their journals name.
	var started, failed SyncMessage
	var initJ, brokenJ Journal
	readPrevious(t, "sync-started.json", &started)
	readPrevious(t, "sync-failed.json", &failed)
	readPrevious(t, "journal-init.json", &initJ)
	readPrevious(t, "journal-start-error.json", &brokenJ)
	if first := initJ.Runs[0]; started.Pid != first.Pid || started.ContainerID != first.ContainerID ||
		started.MonitorPid != initJ.MonitorPid || started.Error != "" || len(started.ContainerID) != 64 {
		t.Errorf("sync-started.json = %+v; the init's journal: monitor %d, first run %+v", started, initJ.MonitorPid, first)
	}
	if failed.MonitorPid != brokenJ.MonitorPid || failed.Pid != 0 || failed.ContainerID != "" ||
		failed.Error != `exec: "/no/such/binary": stat /no/such/binary: no such file or directory` ||
		brokenJ.Runs[0].Exit.Message != failed.Error || brokenJ.Runs[0].Exit.Reason != ReasonStartError {
		t.Errorf("sync-failed.json = %+v; the broken container's journal: monitor %d, first run %+v", failed, brokenJ.MonitorPid, brokenJ.Runs[0])
	}

	var j Journal
	readPrevious(t, "journal.json", &j)
	var resp Response
	readPrevious(t, "response-status.json", &resp)
	if resp.Error != nil || !reflect.DeepEqual(resp.Journal, &j) {
		t.Errorf("response-status.json does not carry journal.json: %+v", resp)
	}
	last := j.Current()
	if j.ID != uid+"_app" || j.MonitorPid != 4200 || j.MonitorStart != 900000 || j.State != StateBackOff ||
		j.RestartCount != 10 || j.BackoffStep != 11 || len(j.Runs) != 11 || last.RestartCount != 10 ||
		last.User == nil || last.User.UID != 1000 || !reflect.DeepEqual(last.User.AdditionalGIDs, []uint32{2000}) ||
		last.Exit == nil || last.Exit.ExitCode != 3 || last.Exit.Reason != ReasonError ||
		last.Exit.Message != "sh: can't create /data/n: Permission denied\nfailing run 0\n" ||
		last.LogPath != LogPath(&cfg, 10) || len(last.ContainerID) != 64 || last.Pid == 0 || last.PidStartTime == 0 {
		t.Errorf("journal.json decoded to %+v, last run %+v", j, last)
	}

	if initJ.State != StateExited || initJ.LastExit() == nil || initJ.LastExit().Reason != ReasonCompleted || !initJ.NextStart.IsZero() {
		t.Errorf("journal-init.json decoded to %+v", initJ)
	}
}

// The restart rule of this version, replayed over the exits the landed monitor
// recorded, reaches the state it recorded: the same back-off step and the same
// next start (to the moment it took the old monitor to compute it).
func TestPreviousVersionRestartDecisions(t *testing.T) {
	for _, tc := range []struct {
		config, journal string
		slack           time.Duration
	}{
		// An exit: the old lean monitor took the exit's time as now, as Ended does.
		{"config.json", "journal.json", 0},
		// A failed start: the old agent-monitor read the clock again after the exit.
		{"config-start-error.json", "journal-start-error.json", 100 * time.Millisecond},
		{"config-init.json", "journal-init.json", 0},
	} {
		t.Run(tc.journal, func(t *testing.T) {
			var cfg ContainerConfig
			var recorded Journal
			readPrevious(t, tc.config, &cfg)
			readPrevious(t, tc.journal, &recorded)
			replay := Journal{State: StateCreating}
			for _, run := range recorded.Runs {
				replay.Runs = append(replay.Runs, run)
				replay.Ended(cfg.Restart)
			}
			if replay.State != recorded.State || replay.BackoffStep != recorded.BackoffStep {
				t.Errorf("replay ends %s at step %d; the monitor recorded %s at step %d",
					replay.State, replay.BackoffStep, recorded.State, recorded.BackoffStep)
			}
			if d := recorded.NextStart.Sub(replay.NextStart); d < 0 || d > tc.slack {
				t.Errorf("replay's next start %v, the monitor's %v", replay.NextStart, recorded.NextStart)
			}
		})
	}
}
