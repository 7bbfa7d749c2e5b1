package supervisor

import "testing"

func TestInCgroup(t *testing.T) {
	const procCgroup = "12:memory:/agent/pod-u/c\n11:pids:/agent/pod-u/c/sub\n0::/agent/monitors/m\n"
	for path, want := range map[string]bool{
		"/agent/pod-u/c":    true,  // v1 memory
		"/agent/pod-u":      true,  // below it
		"/agent/monitors/m": true,  // v2 line
		"/agent/pod-u/cc":   false, // a sibling with a longer name
		"/agent/pod-u/c/s":  false,
		"/other":            false,
	} {
		if got := InCgroup(procCgroup, path); got != want {
			t.Errorf("InCgroup(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestCheckCgroupPath(t *testing.T) {
	for path, ok := range map[string]bool{
		"/agent/pod-u/c": true, "/a": true,
		"": false, "/": false, "agent/x": false, "/agent/../x": false, "/agent/x/": false, "//agent": false, "/agent/./x": false, "/a\x00b": false,
	} {
		if err := CheckCgroupPath(path); (err == nil) != ok {
			t.Errorf("CheckCgroupPath(%q) = %v, want ok %v", path, err, ok)
		}
		if _, err := KillCgroup(path); !ok && err == nil {
			t.Errorf("KillCgroup(%q) accepted it", path)
		}
	}
}
