package monitor

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// A user name resolves against the image's own files, read inside its rootfs:
// absolute symlinks resolve within it, never to the host's /etc/passwd, and a FIFO
// or a device there is refused at once.
func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	mk := func(rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk("usr/lib/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1234:4321::/:/bin/sh\n")
	mk("etc/group", "root:x:0:\nstaff:x:50:app\nwheel:x:10:app,root\n")
	// An absolute link: inside the rootfs it is the image's own file; followed
	// on the host it would be the host's /usr/lib/passwd (or nothing).
	if err := os.Symlink("/usr/lib/passwd", filepath.Join(root, "etc", "passwd")); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		spec string
		want protocol.RunUser
	}{
		{"app", protocol.RunUser{UID: 1234, GID: 4321, AdditionalGIDs: []uint32{50, 10, 99}}},
		{"app:staff", protocol.RunUser{UID: 1234, GID: 50, AdditionalGIDs: []uint32{99}}},
		{"1234", protocol.RunUser{UID: 1234, GID: 4321, AdditionalGIDs: []uint32{50, 10, 99}}},
		{"77:88", protocol.RunUser{UID: 77, GID: 88, AdditionalGIDs: []uint32{99}}},
	} {
		got, err := resolveUser(&protocol.Process{User: tc.spec, AdditionalGIDs: []uint32{99}}, root)
		if err != nil {
			t.Errorf("%s: %v", tc.spec, err)
			continue
		}
		if !reflect.DeepEqual(*got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.spec, *got, tc.want)
		}
	}
	if _, err := resolveUser(&protocol.Process{User: "nobody-here"}, root); err == nil || !strings.Contains(err.Error(), "nobody-here") {
		t.Errorf("unknown user: %v", err)
	}
	if got, err := resolveUser(&protocol.Process{UID: 5, GID: 6}, root); err != nil || got.UID != 5 || got.GID != 6 {
		t.Errorf("no user spec: %+v %v", got, err)
	}

	// A FIFO at /etc/group: refused, not a hang.
	if err := os.Remove(filepath.Join(root, "etc", "group")); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(root, "etc", "group"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := resolveUser(&protocol.Process{User: "app"}, root); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("FIFO /etc/group: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("resolveUser blocked on a FIFO")
	}
	// A link that tries to leave the rootfs stays inside it.
	if err := os.Remove(filepath.Join(root, "etc", "group")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../../../../../../../../etc/group", filepath.Join(root, "etc", "group")); err != nil {
		t.Fatal(err)
	}
	if _, err := resolveUser(&protocol.Process{User: "app:root"}, root); err == nil {
		t.Errorf("a group found through a link out of the rootfs")
	}
}
