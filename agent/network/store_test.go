package network

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// write creates a file with its parents.
func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func TestReadReservations(t *testing.T) {
	state := t.TempDir()
	outside := t.TempDir()
	write(t, filepath.Join(outside, "10.9.9.9"), "outside-pod\r\neth0")
	dir := filepath.Join(ipamDir(state), networkName)
	write(t, filepath.Join(dir, "10.1.0.2"), "pod-a\r\neth0")
	write(t, filepath.Join(dir, "10.1.0.3"), "pod-b") // host-local before 0.7
	write(t, filepath.Join(dir, "10.1.0.4"), "pod-c\r\neth0\n")
	write(t, filepath.Join(dir, "lock"), "")
	write(t, filepath.Join(dir, "last_reserved_ip.0"), "10.1.0.4")
	// Not reservations of ours: each is skipped and reported.
	symlink(t, filepath.Join(outside, "10.9.9.9"), filepath.Join(dir, "10.1.0.20"))
	if err := os.Mkdir(filepath.Join(dir, "10.1.0.21"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "10.1.0.22"), "-rf\r\neth0")
	write(t, filepath.Join(dir, "10.1.0.23"), "../../etc\r\neth0")
	write(t, filepath.Join(dir, "10.1.0.24"), "a b\r\neth0")
	write(t, filepath.Join(dir, "10.1.0.25"), "pod-d\r\nnet1")
	write(t, filepath.Join(dir, "10.1.0.26"), "")
	write(t, filepath.Join(dir, "10.1.0.27"), strings.Repeat("a", maxStateFile+1))
	// Not named as host-local names addresses: not looked at.
	write(t, filepath.Join(dir, "010.1.0.5"), "pod-e\r\neth0")
	write(t, filepath.Join(ipamDir(state), "other-network", "10.1.0.6"), "pod-f\r\neth0")

	res, bad, err := readReservations(state)
	if err != nil {
		t.Fatal(err)
	}
	want := []reservation{
		{netip.MustParseAddr("10.1.0.2"), "pod-a", "eth0"},
		{netip.MustParseAddr("10.1.0.3"), "pod-b", ""},
		{netip.MustParseAddr("10.1.0.4"), "pod-c", "eth0"},
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("reservations %v, want %v", res, want)
	}
	if len(bad) != 8 {
		t.Errorf("reported %d unreadable reservations, want 8: %v", len(bad), bad)
	}
	for _, err := range bad {
		if strings.Contains(err.Error(), "10.9.9.9") || strings.Contains(err.Error(), "outside-pod") {
			t.Errorf("read through the symlink: %v", err)
		}
	}
	if got := reservedIPv4s(state, "pod-b"); !reflect.DeepEqual(got, []string{"10.1.0.3"}) {
		t.Errorf("reservedIPv4s(pod-b) = %v", got)
	}

	// A store that is a symlink out of StateDir is not read.
	for _, link := range []string{filepath.Join(ipamDirName, networkName), ipamDirName} {
		state := t.TempDir()
		target := filepath.Join(outside, networkName)
		if link == ipamDirName {
			target = outside
		}
		write(t, filepath.Join(outside, networkName, "10.1.0.2"), "outside-pod\r\neth0")
		symlink(t, target, filepath.Join(state, link))
		res, _, err := readReservations(state)
		if err == nil || len(res) != 0 {
			t.Errorf("%s a symlink: reservations %v, error %v; want an error and none", link, res, err)
		}
	}
	// No store yet: nothing, and no error.
	if res, bad, err := readReservations(t.TempDir()); res != nil || bad != nil || err != nil {
		t.Errorf("empty state: %v, %v, %v", res, bad, err)
	}
}

func TestReadCacheEntries(t *testing.T) {
	state := t.TempDir()
	outside := t.TempDir()
	dir := filepath.Join(cacheDir(state), "results")
	entry := func(id, netns string) string {
		return `{"kind":"cniCacheV1","containerId":"` + id + `","ifName":"eth0","networkName":"agentd","netns":"` + netns + `"}`
	}
	write(t, filepath.Join(dir, "agentd-pod-a-eth0"), entry("pod-a", "/run/agent/pods/pod-a/ns/net"))
	write(t, filepath.Join(dir, "agentd-pod-b-eth0"), `{"kind":"cniCacheV1","contai`) // half-written
	write(t, filepath.Join(dir, "agentd-pod-c-eth0"), entry("pod-x", "/run/agent/pods/pod-x/ns/net"))
	write(t, filepath.Join(dir, "agentd-pod-d-eth0"), entry("pod-d", "../../proc/1/ns/net"))
	write(t, filepath.Join(outside, "e"), entry("pod-e", "/proc/1/ns/net"))
	symlink(t, filepath.Join(outside, "e"), filepath.Join(dir, "agentd-pod-e-eth0"))
	// Not ours: another network, another interface, an ID CNI would refuse.
	write(t, filepath.Join(dir, "podman-pod-f-eth0"), entry("pod-f", ""))
	write(t, filepath.Join(dir, "agentd-pod-g-net1"), entry("pod-g", ""))
	write(t, filepath.Join(dir, "agentd--rf-eth0"), entry("-rf", ""))

	entries, bad, err := readCacheEntries(state)
	if err != nil {
		t.Fatal(err)
	}
	want := []cacheEntry{
		{ContainerID: "pod-a", NetNS: "/run/agent/pods/pod-a/ns/net"},
		{ContainerID: "pod-b", NetNS: ""},
		{ContainerID: "pod-c", NetNS: ""},
		{ContainerID: "pod-d", NetNS: ""},
		{ContainerID: "pod-e", NetNS: ""},
	}
	if !reflect.DeepEqual(entries, want) {
		t.Errorf("cache entries %v, want %v", entries, want)
	}
	if len(bad) != 4 {
		t.Errorf("reported %d unreadable entries, want 4 (b, c, d, e): %v", len(bad), bad)
	}

	state = t.TempDir()
	write(t, filepath.Join(outside, "results", "agentd-pod-a-eth0"), entry("pod-a", ""))
	symlink(t, outside, filepath.Join(state, cacheDirName))
	if entries, _, err := readCacheEntries(state); err == nil || len(entries) != 0 {
		t.Errorf("cache dir a symlink: entries %v, error %v; want an error and none", entries, err)
	}
}

func TestCheckCacheEntry(t *testing.T) {
	state := t.TempDir()
	outside := t.TempDir()
	dir := filepath.Join(cacheDir(state), "results")
	name := func(uid string) string { return filepath.Join(dir, networkName+"-"+uid+"-"+ifName) }
	write(t, filepath.Join(outside, "entry"), `{"kind":"cniCacheV1"}`)
	write(t, name("regular"), `{"kind":"cniCacheV1"}`)
	symlink(t, filepath.Join(outside, "entry"), name("symlink"))
	if err := os.Mkdir(name("dir"), 0o700); err != nil {
		t.Fatal(err)
	}

	for uid, wantErr := range map[string]bool{"regular": false, "missing": false, "symlink": false, "dir": true} {
		if err := checkCacheEntry(state, uid); (err != nil) != wantErr {
			t.Errorf("checkCacheEntry(%s) = %v, want error %v", uid, err, wantErr)
		}
	}
	if _, err := os.Stat(name("regular")); err != nil {
		t.Errorf("regular entry: %v", err)
	}
	if _, err := os.Lstat(name("symlink")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an entry that is a symlink is still there (%v): libcni would read through it", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "entry")); err != nil {
		t.Errorf("the symlink's target went: %v", err)
	}
	if err := checkCacheEntry(t.TempDir(), "regular"); err != nil {
		t.Errorf("no cache yet: %v", err)
	}
	state = t.TempDir()
	symlink(t, outside, filepath.Join(state, cacheDirName))
	if err := checkCacheEntry(state, "regular"); err == nil {
		t.Error("a cache directory that is a symlink out of StateDir is accepted")
	}
}
