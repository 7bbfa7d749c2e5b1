package cgroupkill

import "testing"

func TestMember(t *testing.T) {
	const procCgroup = "12:memory:/agent/pod-u/c\n11:pids:/agent/pod-u/c/sub\n0::/agent/monitors/m\n"
	for path, want := range map[string]bool{
		"/agent/pod-u/c":    true,  // v1 memory
		"/agent/pod-u":      true,  // below it
		"/agent/monitors/m": true,  // v2 line
		"/agent/pod-u/cc":   false, // a sibling with a longer name
		"/agent/pod-u/c/s":  false,
		"/other":            false,
	} {
		if got := Member(procCgroup, path); got != want {
			t.Errorf("Member(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestCheckPath(t *testing.T) {
	for path, ok := range map[string]bool{
		"/agent/pod-u/c": true, "/a": true,
		"": false, "/": false, "agent/x": false, "/agent/../x": false, "/agent/x/": false, "//agent": false, "/agent/./x": false, "/a\x00b": false,
	} {
		if err := CheckPath(path); (err == nil) != ok {
			t.Errorf("CheckPath(%q) = %v, want ok %v", path, err, ok)
		}
		if _, err := Cgroup(path); !ok && err == nil {
			t.Errorf("Cgroup(%q) accepted it", path)
		}
	}
}
