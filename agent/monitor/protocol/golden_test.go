package protocol

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// The golden files in testdata/golden pin every message and file of the protocol
// byte for byte: field names, their order, what is omitted when empty, how times
// and durations are written. A newer agentd or agent-monitor meets what an older
// one wrote or sends (a monitor outlives both), so a change here breaks upgrades
// unless it only adds a field. Rewrite them with
//
//	go test ./agent/monitor/protocol -run Golden -update
//
// only for such an addition, and keep testdata/v1.0 (what the previous version
// wrote) as it is: TestDecodePreviousVersion proves it still decodes.
var update = flag.Bool("update", false, "rewrite testdata/golden from the values in golden_test.go")

var (
	goldenT0 = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	goldenT1 = goldenT0.Add(90 * time.Second)
	goldenT2 = goldenT1.Add(10 * time.Second)
)

const goldenCID = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"

// goldenConfig sets every field of ContainerConfig (TestGoldenValuesSetEveryField).
func goldenConfig() *ContainerConfig {
	adj := -997
	return &ContainerConfig{
		ID:   "0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10_app",
		Name: "app",
		Pod:  PodRef{Namespace: "default", Name: "web", UID: "0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10"},
		Image: ImageRef{Name: "localhost/busybox:latest",
			ID: "sha256:3f57d9401f8d42f986df300f0c69192fc41da28ccc8d797829467780db3dd741"},
		Rootfs: Rootfs{Layers: []string{"/var/lib/agent/images/layers/sha256/aa", "/var/lib/agent/images/layers/sha256/bb"},
			Driver: "overlay", ReadOnly: true, RunsDir: "/var/lib/agent/containers/0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10_app/runs"},
		Process: Process{
			Args:            []string{"sh", "-c", "echo hello; sleep 3600"},
			Env:             []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=web"},
			Cwd:             "/work",
			UID:             1000,
			GID:             1000,
			AdditionalGIDs:  []uint32{10, 20},
			User:            "app:staff",
			Capabilities:    []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE"},
			NoNewPrivileges: true,
			OOMScoreAdj:     &adj,
			Stdin:           true,
			StdinOnce:       true,
			Tty:             true,
		},
		Hostname: "web",
		Namespaces: Namespaces{
			Net: "/run/agent/pods/0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/ns/net",
			IPC: "/run/agent/pods/0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/ns/ipc",
			UTS: "/run/agent/pods/0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/ns/uts",
			PID: NamespaceHost,
		},
		Mounts: []Mount{
			{Source: "/var/lib/agent/pods/0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/volumes/data", Destination: "/data",
				SubPath: "app/cache", Type: "bind", Options: []string{"rbind", "rw"}},
			{Source: "tmpfs", Destination: "/tmp", Type: "tmpfs", Options: []string{"nosuid", "size=65536k"}},
		},
		Privileged: true,
		Seccomp:    "RuntimeDefault",
		Cgroup: Cgroup{
			Path:        "/agent/pod-0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/app",
			MonitorPath: "/agent/monitors/0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10_app",
			MemoryLimit: 128 << 20,
			CPUShares:   102,
			CPUQuota:    50000,
			CPUPeriod:   100000,
			PidsLimit:   4096,
			CpusetCpus:  "0-1,3",
			CpusetMems:  "0",
		},
		Log: LogConfig{Dir: "/var/log/pods/default_web_0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/app", Root: "/var/log/pods",
			File:    "default_web_0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/app/0.log",
			MaxSize: 10 << 20, MaxFiles: 5},
		Restart: Restart{Policy: RestartOnFailure, BackoffBase: 10 * time.Second, BackoffMax: 5 * time.Minute,
			ResetAfter: 10 * time.Minute},
		Stop: StopConfig{Signal: 15, GracePeriod: 30 * time.Second},
		Termination: Termination{MessagePath: "/dev/termination-log", FallbackToLog: true,
			HostPath: "/run/agent/pods/0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/termination/app"},
		Sysctls:   map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shm_rmid_forced": "1"},
		StateRoot: "/run/agent/libcontainer",
	}
}

// goldenJournal has a run that exited and one that runs, and every field set.
func goldenJournal() *Journal {
	return &Journal{
		ID:           "0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10_app",
		MonitorPid:   4242,
		MonitorStart: 987654,
		State:        StateBackOff,
		Stopped:      true,
		RestartCount: 1,
		BackoffStep:  2,
		NextStart:    goldenT2,
		Runs: []Run{
			{ContainerID: strings.Repeat("a", 64), Pid: 4250, PidStartTime: 987660, RestartCount: 0, StartedAt: goldenT0,
				LogPath: "/var/log/pods/default_web_0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/app/0.log",
				User:    &RunUser{UID: 1000, GID: 1000, AdditionalGIDs: []uint32{10, 20}},
				Exit: &Exit{ExitCode: 137, Signal: 9, Reason: ReasonOOMKilled, Message: "out of memory",
					FinishedAt: goldenT1}},
			{ContainerID: goldenCID, Pid: 4300, PidStartTime: 988000, RestartCount: 1, StartedAt: goldenT2,
				LogPath: "/var/log/pods/default_web_0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10/app/1.log",
				User:    &RunUser{UID: 1000, GID: 1000}},
		},
		DroppedLog: 4096,
		Speaks:     &Speaks{Protocol: Name, Major: 1, Minor: 3},
	}
}

func goldenExecRequest() *ExecRequest {
	return &ExecRequest{Args: []string{"sh", "-c", "ls /"}, Env: []string{"TERM=xterm"}, Cwd: "/work",
		Tty: true, Stdin: true, Width: 80, Height: 24}
}

// goldenResources sets every field of Resources.
func goldenResources() *Resources {
	mem, shares, quota, period, cpus, mems := int64(256<<20), uint64(512), int64(150000), uint64(100000), "0-3", "0"
	return &Resources{MemoryLimit: &mem, CPUShares: &shares, CPUQuota: &quota, CPUPeriod: &period, CpusetCpus: &cpus, CpusetMems: &mems}
}

func goldenHandoff() *Handoff {
	return &Handoff{StateDir: "/run/agent/monitors/0c8f2a9e-5b7d-4e1a-9c3f-6d2b8a7e4f10_app", Listener: 5, Stdout: 6,
		Stderr: 7, Lock: 4, Stdin: 8, Console: 9, Fat: "/usr/local/bin/agent-monitor", Lean: "/usr/local/bin/agent-monitor-lean"}
}

// goldenFrames are the frames of an exec stream, hex-encoded.
func goldenFrames(t *testing.T) map[string]string {
	frames := map[string]struct {
		typ     byte
		payload []byte
	}{
		"stdin":      {FrameStdin, []byte("ls\n")},
		"stdout":     {FrameStdout, []byte("bin\n")},
		"stderr":     {FrameStderr, []byte("oops\n")},
		"closeStdin": {FrameCloseStdin, nil},
		"resize":     {FrameResize, ResizePayload(80, 24)},
		"exit":       {FrameExit, ExitPayload(3)},
		"exitNeg":    {FrameExit, ExitPayload(-1)},
		"error":      {FrameError, []byte("container is not running")},
	}
	out := map[string]string{}
	for name, f := range frames {
		var b bytes.Buffer
		if err := WriteFrame(&b, f.typ, f.payload); err != nil {
			t.Fatal(err)
		}
		out[name] = hex.EncodeToString(b.Bytes())
	}
	return out
}

// goldenMessages lists every golden file with the value it holds. The values of
// one type together set every field (TestGoldenValuesSetEveryField).
func goldenMessages(t *testing.T) []struct {
	file string
	v    any
} {
	g := Duration(5 * time.Second)
	execArgs, err := ExecArgs(goldenHandoff().StateDir, goldenCID, goldenExecRequest())
	if err != nil {
		t.Fatal(err)
	}
	stateDir := StateDir("/run/agent", goldenConfig().ID)
	updateArgs, err := UpdateArgs(stateDir, goldenCID, goldenResources())
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		file string
		v    any
	}{
		// The control socket: the handshake, one request per op, the responses.
		{"hello.json", NewHello()},
		{"hello-reply.json", &HelloReply{Protocol: Name, Major: Major, Minor: Minor, Capabilities: Capabilities,
			MonitorVersion: "v1.2.3", ID: goldenConfig().ID, Pid: 4242, StartTime: 987654}},
		{"request-status.json", &Request{Op: OpStatus}},
		{"request-stop.json", &Request{Op: OpStop, Grace: &g}},
		{"request-signal.json", &Request{Op: OpSignal, Signal: 1}},
		{"request-kill.json", &Request{Op: OpKill, Grace: &g}},
		{"request-reopen-log.json", &Request{Op: OpReopenLog}},
		{"request-exec.json", &Request{Op: OpExec, Exec: goldenExecRequest()}},
		{"request-attach.json", &Request{Op: OpAttach, Attach: &AttachRequest{Stdin: true, Stdout: true, Stderr: true}}},
		{"request-update.json", &Request{Op: OpUpdate, Update: goldenResources()}},
		{"response-status.json", &Response{Journal: goldenJournal()}},
		{"response-error.json", &Response{Error: &Error{Code: ErrCodeNotRunning, Message: "container is not running"}}},
		{"response-exec.json", &Response{}},
		{"response-update.json", &Response{Cgroup: &goldenConfig().Cgroup}},
		{"exec-frames.json", goldenFrames(t)},
		// agent-monitor start's sync pipe.
		{"sync-started.json", &SyncMessage{Pid: 4250, ContainerID: goldenCID, MonitorPid: 4242}},
		{"sync-failed.json", &SyncMessage{MonitorPid: 4242, Error: `exec: "nosuchcmd": executable file not found in $PATH`}},
		// Between the monitor's images, and how it is started.
		{"handoff.json", goldenHandoff()},
		{"commands.json", map[string]any{
			"start": StartArgs(stateDir), "next": NextArgs(stateDir), "exec": execArgs, "kill": KillArgs(stateDir), "update": updateArgs,
			"syncFd": SyncFd, "lockFd": LockFd, "execConnFd": ExecConnFd, "exitMonitorAlive": ExitMonitorAlive,
			"handoffEnv": HandoffEnv, "leanBinary": LeanBinary,
		}},
		// The state directory and its files.
		{"layout.json", map[string]string{
			"stateDir": stateDir, "config": ConfigFile, "journal": JournalFile, "socket": SocketFile, "lock": LockFile,
			"runDir": RunStateDir(stateDir, goldenCID), "runDirInRunsDir": mustRunDir(t, goldenConfig(), stateDir, goldenCID),
		}},
		{"config.json", goldenConfig()},
		{"journal.json", goldenJournal()},
		// The words the files and messages use.
		{"names.json", map[string]any{
			"protocol": Name, "major": Major, "minor": Minor, "capabilities": Capabilities,
			"ops":        []string{OpStatus, OpStop, OpSignal, OpKill, OpReopenLog, OpExec, OpAttach, OpUpdate},
			"errorCodes": []string{ErrCodeNotRunning, ErrCodeInvalid, ErrCodeUnsupported, ErrCodeInternal, ErrCodeStartFailed},
			"states":     []string{StateCreating, StateRunning, StateBackOff, StateExited},
			"reasons":    []string{ReasonCompleted, ReasonError, ReasonOOMKilled, ReasonStartError, ReasonMonitorLost},
			"policies":   []string{RestartAlways, RestartOnFailure, RestartNever},
			"frames": map[string]byte{"stdin": FrameStdin, "stdout": FrameStdout, "stderr": FrameStderr,
				"closeStdin": FrameCloseStdin, "resize": FrameResize, "exit": FrameExit, "error": FrameError},
			"maxFrame": MaxFrame, "maxJournalRuns": MaxJournalRuns, "namespaceHost": NamespaceHost,
			"maxTerminationMessage": MaxTerminationMessage, "maxRequestLine": MaxRequestLine,
			"maxResponseLine": MaxResponseLine, "monitorOOMScoreAdj": MonitorOOMScoreAdj,
			"defaultBackoff": []time.Duration{DefaultBackoffBase, DefaultBackoffMax, DefaultResetAfter},
		}},
	}
}

func mustRunDir(t *testing.T, cfg *ContainerConfig, stateDir, containerID string) string {
	t.Helper()
	dir, err := RunDir(cfg, stateDir, containerID)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// golden is how a golden file holds a value: indented JSON. The wire and the
// files carry the same JSON without the indentation (json.Marshal).
func golden(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	return append(data, '\n'), err
}

func TestGolden(t *testing.T) {
	dir := filepath.Join("testdata", "golden")
	seen := map[string]bool{}
	for _, m := range goldenMessages(t) {
		seen[m.file] = true
		t.Run(m.file, func(t *testing.T) {
			got, err := golden(m.v)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, m.file)
			if *update {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (a new message or file? write its golden file with -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s changed: a monitor or agentd of another version would read it differently.\n"+
					"Only adding a field is compatible; then rewrite with -update.\ngot:\n%s\nwant:\n%s", path, got, want)
			}
			// Decoding the golden file gives the value back: nothing is lost on the way.
			if reflect.TypeOf(m.v).Kind() != reflect.Pointer {
				return // the maps of names and frames: pinned, not decoded by anyone
			}
			back := reflect.New(reflect.TypeOf(m.v).Elem())
			if err := json.Unmarshal(want, back.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Interface(), m.v) {
				t.Errorf("%s decodes to %+v, want %+v", path, back.Interface(), m.v)
			}
		})
	}
	// No golden file without its value: a stale one would pin nothing.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("%s has no value in goldenMessages: remove it or add it", filepath.Join(dir, e.Name()))
		}
	}
}

// The golden values must set every field of every type they hold, so that a field
// added to a message or file is pinned as soon as it is added.
func TestGoldenValuesSetEveryField(t *testing.T) {
	byType := map[reflect.Type][]reflect.Value{}
	for _, m := range goldenMessages(t) {
		v := reflect.ValueOf(m.v)
		if v.Kind() == reflect.Pointer {
			byType[v.Type()] = append(byType[v.Type()], v.Elem())
		}
	}
	for typ, values := range byType {
		// A field counts as set when one of the values of its type sets it.
		unset := map[string]int{}
		for _, v := range values {
			for _, f := range unsetFields(v, typ.Elem().Name()) {
				unset[f]++
			}
		}
		var missing []string
		for f, n := range unset {
			if n == len(values) && !zeroIsTheValue[f] {
				missing = append(missing, f)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("no golden value sets %v: set them in golden_test.go and run -update", missing)
		}
	}
}

// zeroIsTheValue lists the fields whose golden value is zero because this version's is.
var zeroIsTheValue = map[string]bool{}

// unsetFields lists the fields below v that hold their zero value, as paths.
func unsetFields(v reflect.Value, path string) []string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return []string{path}
		}
		return unsetFields(v.Elem(), path)
	case reflect.Slice:
		if v.Len() == 0 {
			return []string{path}
		}
		// Every field of the element type must be set in one of the elements.
		count := map[string]int{}
		for i := 0; i < v.Len(); i++ {
			for _, f := range unsetFields(v.Index(i), path+"[]") {
				count[f]++
			}
		}
		var out []string
		for f, n := range count {
			if n == v.Len() {
				out = append(out, f)
			}
		}
		return out
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			if v.Interface().(time.Time).IsZero() {
				return []string{path}
			}
			return nil
		}
		var out []string
		for i := 0; i < v.NumField(); i++ {
			out = append(out, unsetFields(v.Field(i), path+"."+v.Type().Field(i).Name)...)
		}
		return out
	}
	if v.IsZero() {
		return []string{path}
	}
	return nil
}

// The frames decode to what was written.
func TestGoldenFramesDecode(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "golden", "exec-frames.json"))
	if err != nil {
		t.Fatal(err)
	}
	var frames map[string]string
	if err := json.Unmarshal(data, &frames); err != nil {
		t.Fatal(err)
	}
	read := func(name string) (byte, []byte) {
		raw, err := hex.DecodeString(frames[name])
		if err != nil {
			t.Fatal(err)
		}
		typ, payload, err := ReadFrame(bytes.NewReader(raw), nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return typ, payload
	}
	if typ, p := read("stdout"); typ != FrameStdout || string(p) != "bin\n" {
		t.Errorf("stdout frame: %d %q", typ, p)
	}
	if typ, p := read("resize"); typ != FrameResize {
		t.Errorf("resize frame type %d", typ)
	} else if w, h, ok := ParseResizePayload(p); !ok || w != 80 || h != 24 {
		t.Errorf("resize frame: %d×%d %v", w, h, ok)
	}
	if typ, p := read("exit"); typ != FrameExit || ParseExitPayload(p) != 3 {
		t.Errorf("exit frame: %d %d", typ, ParseExitPayload(p))
	}
	if _, p := read("exitNeg"); ParseExitPayload(p) != -1 {
		t.Errorf("exit frame of -1: %d", ParseExitPayload(p))
	}
}
