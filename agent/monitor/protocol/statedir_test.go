package protocol

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// A journal write leaves the journal only: neither its own temporary file nor
// the fixed-name one an older monitor killed mid-write left.
func TestWriteJournalLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, JournalFile+".tmp")
	if err := os.WriteFile(legacy, []byte(`{"id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := WriteJournal(dir, &Journal{ID: "c1", RestartCount: i}); err != nil {
			t.Fatal(err)
		}
	}
	j, err := ReadJournal(dir)
	if err != nil || j.ID != "c1" || j.RestartCount != 2 {
		t.Fatalf("ReadJournal = %+v, %v", j, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != JournalFile {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("state directory holds %q, want %s only", names, JournalFile)
	}
}

// The journal keeps the most recent MaxJournalRuns runs; the restart count keeps
// counting the others.
func TestWriteJournalKeepsRecentRuns(t *testing.T) {
	dir := t.TempDir()
	j := &Journal{ID: "c1", RestartCount: MaxJournalRuns + 4}
	for i := range MaxJournalRuns + 5 {
		j.Runs = append(j.Runs, Run{RestartCount: i})
	}
	if err := WriteJournal(dir, j); err != nil {
		t.Fatal(err)
	}
	got, err := ReadJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Runs) != MaxJournalRuns || got.Runs[0].RestartCount != 5 || got.Current().RestartCount != MaxJournalRuns+4 {
		t.Errorf("runs kept: %d, from %d to %d", len(got.Runs), got.Runs[0].RestartCount, got.Current().RestartCount)
	}
}

func TestConfigRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadConfig(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadConfig of an empty dir: %v, want ErrNotExist", err)
	}
	cfg := goldenConfig()
	if err := WriteConfig(dir, cfg); err != nil {
		t.Fatal(err)
	}
	got, err := ReadConfig(dir)
	if err != nil || !reflect.DeepEqual(got, cfg) {
		t.Errorf("ReadConfig = %+v, %v; want %+v", got, err, cfg)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadConfig(dir); err == nil || !strings.Contains(err.Error(), ConfigFile) {
		t.Errorf("ReadConfig of a torn file: %v, want an error naming it", err)
	}
}

func TestLayout(t *testing.T) {
	if got := StateDir("/run/agent", "c1"); got != "/run/agent/monitors/c1" {
		t.Errorf("StateDir = %s", got)
	}
	if got := RunStateDir("/run/agent/monitors/c1", "abc"); got != "/run/agent/monitors/c1/runs/abc" {
		t.Errorf("RunStateDir = %s", got)
	}
	cfg := &ContainerConfig{Log: LogConfig{Dir: "/var/log/pods/ns_p_u/c"}}
	if got := LogPath(cfg, 3); got != "/var/log/pods/ns_p_u/c/3.log" {
		t.Errorf("LogPath = %s", got)
	}
	if got := LogRoot(cfg); got != "/var/log/pods" {
		t.Errorf("LogRoot of a config without Log.Root = %s", got)
	}
	cfg.Log.Root = "/logs"
	if got := LogRoot(cfg); got != "/logs" {
		t.Errorf("LogRoot = %s", got)
	}
	// A CRI client's log file, the same for every run.
	cfg.Log.File = "sandbox1/app_0.log"
	for _, n := range []int{0, 3} {
		if got := LogPath(cfg, n); got != "/logs/sandbox1/app_0.log" {
			t.Errorf("LogPath(%d) with Log.File = %s", n, got)
		}
	}
}

func TestLogConfigCheckFile(t *testing.T) {
	for _, tc := range []struct {
		root, file string
		ok         bool
	}{
		{"/logs", "", true},
		{"", "", true}, // a config written before Root and File
		{"/logs", "app.log", true},
		{"/logs", "app/0.log", true},
		{"/logs", "..log", true}, // a name, not a parent
		{"/logs", "/etc/passwd", false},
		{"/logs", "../app.log", false},
		{"/logs", "app/../../x.log", false},
		{"/logs", "app/../x.log", false}, // not clean
		{"/logs", "./app.log", false},
		{"/logs", "app//0.log", false},
		{"/logs", "app/", false},
		{"/logs", ".", false},
		{"/logs", "..", false},
		{"", "app.log", false},
		{"logs", "app.log", false},
	} {
		l := LogConfig{Root: tc.root, File: tc.file}
		err := l.CheckFile()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrBadLogFile)) {
			t.Errorf("CheckFile(root %q, file %q) = %v, want ok %v", tc.root, tc.file, err, tc.ok)
		}
	}
}

// A state dir too deep for a socket address is reached through /proc/self/fd.
func TestSocketAddr(t *testing.T) {
	short := t.TempDir()
	if addr, done, err := SocketAddr(short); err != nil || addr != filepath.Join(short, SocketFile) {
		t.Errorf("SocketAddr(%s) = %s, %v", short, addr, err)
	} else {
		done()
	}
	long := filepath.Join(short, strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	addr, done, err := SocketAddr(long)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if len(addr) > maxSocketPath || !strings.HasPrefix(addr, "/proc/self/fd/") {
		t.Fatalf("SocketAddr of a long dir = %s", addr)
	}
	l, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := os.Stat(filepath.Join(long, SocketFile)); err != nil {
		t.Errorf("the socket is not in the state dir: %v", err)
	}
}

// A run's directory is under Rootfs.RunsDir (on disk, under agentd's root); a
// config written before RunsDir existed keeps its runs in the state directory, as
// the monitor that wrote them did. A RunsDir that is not absolute and clean, or a
// run ID that is not one component, is refused, never joined.
func TestRunDir(t *testing.T) {
	const stateDir = "/run/agent/monitors/u_c"
	const cid = "abc123"
	for _, tc := range []struct {
		name, runsDir, cid, want, err string
	}{
		{name: "runsDir set", runsDir: "/var/lib/agent/containers/u_c/runs", cid: cid, want: "/var/lib/agent/containers/u_c/runs/abc123"},
		{name: "config of an older agentd: the state dir", cid: cid, want: "/run/agent/monitors/u_c/runs/abc123"},
		{name: "relative runsDir", runsDir: "var/lib/agent/containers/u_c/runs", cid: cid, err: "absolute, clean"},
		{name: "runsDir with dot-dot", runsDir: "/var/lib/agent/containers/../../../etc", cid: cid, err: "absolute, clean"},
		{name: "runsDir with a trailing slash", runsDir: "/var/lib/agent/containers/u_c/runs/", cid: cid, err: "absolute, clean"},
		{name: "runsDir is the root", runsDir: "/", cid: cid, err: "absolute, clean"},
		{name: "runsDir of another container", runsDir: "/var/lib/agent/containers/u_d/runs", cid: cid, err: "is not a directory u_c/runs/"},
		{name: "runsDir not named runs", runsDir: "/var/lib/agent/containers/u_c", cid: cid, err: "is not a directory u_c/runs/"},
		{name: "runsDir elsewhere", runsDir: "/home", cid: cid, err: "is not a directory u_c/runs/"},
		{name: "run ID with a slash", runsDir: "/var/lib/agent/containers/u_c/runs", cid: "a/b", err: "single path component"},
		{name: "run ID dot-dot", cid: "..", err: "single path component"},
		{name: "empty run ID", cid: "", err: "single path component"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &ContainerConfig{ID: "u_c", Rootfs: Rootfs{RunsDir: tc.runsDir}}
			got, err := RunDir(cfg, stateDir, tc.cid)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("RunDir = %q, %v; want an error with %q", got, err, tc.err)
				}
				if (strings.Contains(tc.err, "clean") || strings.Contains(tc.err, "directory")) && !errors.Is(err, ErrBadRunsDir) {
					t.Errorf("error %v is not ErrBadRunsDir", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("RunDir = %q, %v; want %q", got, err, tc.want)
			}
			root, err := RunsRoot(cfg, stateDir)
			if err != nil || filepath.Join(root, tc.cid) != got {
				t.Errorf("RunsRoot = %q, %v; want the parent of %q", root, err, got)
			}
		})
	}
}

// The previous version's configs have no runsDir: their runs stay where that
// monitor put them, in its state directory.
func TestPreviousConfigRunsStayInStateDir(t *testing.T) {
	var cfg ContainerConfig
	readPrevious(t, "config.json", &cfg)
	if cfg.Rootfs.RunsDir != "" {
		t.Fatalf("v1.0 config.json has runsDir %q", cfg.Rootfs.RunsDir)
	}
	got, err := RunsRoot(&cfg, "/run/agent/monitors/"+cfg.ID)
	if want := "/run/agent/monitors/" + cfg.ID + "/runs"; err != nil || got != want {
		t.Errorf("RunsRoot = %q, %v; want %q", got, err, want)
	}
}
