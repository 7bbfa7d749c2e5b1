package monitor

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// maxUserFile bounds how much of an image's /etc/passwd or /etc/group is read.
const maxUserFile = 1 << 20

// resolveUser gives the identity of a run: cfg.Process's numbers, or, with a user
// spec, what the container's own /etc/passwd and /etc/group say, read inside its
// rootfs (symlinks resolve within it, RESOLVE_IN_ROOT), as runc resolves a user.
// rootfs is the merged tree under either storage driver (the overlay mount, or
// layerfs.Apply's copy), never a layer directory: a passwd an upper layer
// deleted (whiteout, opaque /etc) is not there to read. Pod supplementalGroups
// come after the user's own groups.
func resolveUser(p *protocol.Process, rootfs string) (*protocol.RunUser, error) {
	u := &protocol.RunUser{UID: p.UID, GID: p.GID, AdditionalGIDs: p.AdditionalGIDs}
	if p.User == "" {
		return u, nil
	}
	passwd, err := readInRootfs(rootfs, "etc/passwd")
	if err != nil {
		return nil, err
	}
	group, err := readInRootfs(rootfs, "etc/group")
	if err != nil {
		return nil, err
	}
	eu, err := user.GetExecUser(p.User, &user.ExecUser{}, passwd, group)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", p.User, err)
	}
	u.UID, u.GID = uint32(eu.Uid), uint32(eu.Gid)
	var gids []uint32
	for _, g := range eu.Sgids {
		gids = append(gids, uint32(g))
	}
	for _, g := range p.AdditionalGIDs {
		if !slices.Contains(gids, g) {
			gids = append(gids, g)
		}
	}
	u.AdditionalGIDs = gids
	return u, nil
}

// readInRootfs reads rel inside rootfs as the container would see it, never leaving
// it, never blocking on a FIFO, only from a regular file, at most maxUserFile
// bytes. A missing file is a nil reader.
func readInRootfs(rootfs, rel string) (io.Reader, error) {
	dir, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	})
	if err == unix.ENOENT {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("/%s of the image: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("/%s of the image is not a regular file", rel)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxUserFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxUserFile {
		return nil, fmt.Errorf("/%s of the image is larger than %d bytes", rel, maxUserFile)
	}
	return bytes.NewReader(data), nil
}
