// Package mounts unmounts what agentd and its monitors mounted below their own
// directories, and removes such a directory only once nothing is mounted in it.
package mounts

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Under lists the mount points at or below dir, deepest first.
func Under(dir string) []string {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.Mountpoint)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// UnmountAll lazily unmounts path until nothing is mounted there (mounts stack).
func UnmountAll(path string) {
	for i := 0; i < 8; i++ {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			return
		}
	}
}

// RemoveUnmounted unmounts everything at or below dir, deepest first, then removes
// dir, but only when nothing is mounted there any more: a removal that went on
// through a bind mount (a pinned subPath, a volume) would delete the data behind it.
func RemoveUnmounted(dir string) error {
	for _, m := range Under(dir) {
		UnmountAll(m)
	}
	if left := Under(dir); len(left) > 0 {
		return fmt.Errorf("%s: still mounted, not removed: %s", dir, strings.Join(left, ", "))
	}
	return os.RemoveAll(dir)
}
