package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containernetworking/cni/pkg/utils"
	"golang.org/x/sys/unix"
)

// What the network's state in StateDir says about attachments, read without
// the plugins: Collect finds the pods to tear down there, and teardown learns
// a pod's address from host-local when the CNI cache has none. The files are
// written by libcni and by host-local, both run by agentd, but what is read
// from them ends up as plugin and iptables arguments: each directory is
// opened beneath StateDir without following symlinks, only regular files of a
// bounded size are read, and IDs and names are checked before use.

// maxStateFile bounds what is read of one file: a reservation is an ID and an
// interface name, a cache entry a result and a small configuration.
const maxStateFile = 1 << 20

// reservation is one of host-local's files: <ipamDir>/agentd/<ip> holds
// "<container ID>\r\n<ifname>" (or, written by host-local before 0.7, the ID alone).
type reservation struct {
	IP          netip.Addr
	ContainerID string
	IfName      string // "" for the old format
}

// readReservations lists host-local's reservations for our network, sorted by
// address. Files that are not reservations (host-local's lock and
// last_reserved_ip.* files) are skipped; a file that names an address but
// cannot be read as a reservation of ours is reported in bad and skipped.
func readReservations(stateDir string) (res []reservation, bad []error, err error) {
	dir, err := openDirBeneath(stateDir, ipamDirName, networkName)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("host-local reservations: %w", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, nil, fmt.Errorf("host-local reservations in %s: %w", dir.Name(), err)
	}
	for _, name := range names {
		ip, err := netip.ParseAddr(name)
		if err != nil || ip.String() != name {
			continue // lock, last_reserved_ip.<range>
		}
		r, err := readReservation(dir, ip)
		if err != nil {
			bad = append(bad, fmt.Errorf("host-local reservation %s: %w", filepath.Join(dir.Name(), name), err))
			continue
		}
		res = append(res, r)
	}
	sort.Slice(res, func(i, j int) bool { return res[i].IP.Less(res[j].IP) })
	return res, bad, nil
}

// readReservation reads the file of ip in dir.
func readReservation(dir *os.File, ip netip.Addr) (reservation, error) {
	b, err := readFileAt(dir, ip.String())
	if err != nil {
		return reservation{}, err
	}
	return parseReservation(ip, b)
}

// parseReservation checks what a reservation file holds: the ID of a
// container, and our interface name or none.
func parseReservation(ip netip.Addr, b []byte) (reservation, error) {
	id, ifn, _ := strings.Cut(strings.TrimSpace(string(b)), "\r\n")
	if !validContainerID(id) {
		return reservation{}, fmt.Errorf("%q is not a container ID", id)
	}
	if ifn != "" && ifn != ifName {
		return reservation{}, fmt.Errorf("interface %q is not the pod interface %s", ifn, ifName)
	}
	return reservation{IP: ip, ContainerID: id, IfName: ifn}, nil
}

// reservedIPv4s lists the IPv4 addresses host-local holds for a pod.
func reservedIPv4s(stateDir, podUID string) []string {
	res, _, _ := readReservations(stateDir)
	var ips []string
	for _, r := range res {
		if r.ContainerID == podUID && r.IP.Is4() {
			ips = append(ips, r.IP.String())
		}
	}
	return ips
}

// cacheEntry is what Collect needs of one of libcni's cache files,
// <cacheDir>/results/<network>-<container ID>-<ifname>.
type cacheEntry struct {
	ContainerID string
	NetNS       string        // the namespace the pod was attached in; "" when the file is unreadable
	Ports       []PortMapping // the host ports it was attached with
}

// cachedEntry is the part of libcni's cachedInfo that Collect reads.
type cachedEntry struct {
	Kind        string `json:"kind"`
	ContainerID string `json:"containerId"`
	IfName      string `json:"ifName"`
	NetworkName string `json:"networkName"`
	NetNS       string `json:"netns"`
	// CapabilityArgs holds the pod's portMappings.
	CapabilityArgs map[string]interface{} `json:"capabilityArgs"`
}

// readCacheEntries lists the CNI cache's attachments to our network, sorted
// by container ID. The file name says which pod an entry is for; an entry
// whose content cannot be read (libcni writes it in place, so a crash can
// leave it half-written) is listed without a namespace, and its problem is
// reported in bad.
func readCacheEntries(stateDir string) (entries []cacheEntry, bad []error, err error) {
	dir, err := openDirBeneath(stateDir, cacheDirName, "results")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("CNI cache: %w", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, nil, fmt.Errorf("CNI cache in %s: %w", dir.Name(), err)
	}
	for _, name := range names {
		id, ok := cacheFileContainerID(name)
		if !ok {
			continue // another network's or interface's
		}
		e := cacheEntry{ContainerID: id}
		if c, err := readCachedEntry(dir, name, id); err != nil {
			bad = append(bad, fmt.Errorf("CNI cache entry %s: %w", filepath.Join(dir.Name(), name), err))
		} else {
			e.NetNS, e.Ports = c.NetNS, cachedPortMappings(c.CapabilityArgs)
		}
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].ContainerID < entries[j].ContainerID })
	return entries, bad, nil
}

// cacheFileContainerID reads the container ID out of a cache file name of our
// network and interface (libcni's getCacheFilePath).
func cacheFileContainerID(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, networkName+"-")
	if !ok {
		return "", false
	}
	id, ok = strings.CutSuffix(id, "-"+ifName)
	if !ok || !validContainerID(id) {
		return "", false
	}
	return id, true
}

// readCachedEntry reads and checks a cache entry: the namespace path it was
// made for and its capability args.
func readCachedEntry(dir *os.File, name, id string) (cachedEntry, error) {
	b, err := readFileAt(dir, name)
	if err != nil {
		return cachedEntry{}, err
	}
	var c cachedEntry
	if err := json.Unmarshal(b, &c); err != nil {
		return cachedEntry{}, err
	}
	if c.Kind != "cniCacheV1" || c.ContainerID != id || c.NetworkName != networkName || c.IfName != ifName {
		return cachedEntry{}, fmt.Errorf("entry of kind %q is for container %q, network %q, interface %q", c.Kind, c.ContainerID, c.NetworkName, c.IfName)
	}
	if c.NetNS != "" && (!filepath.IsAbs(c.NetNS) || filepath.Clean(c.NetNS) != c.NetNS) {
		return cachedEntry{}, fmt.Errorf("namespace path %q is not a clean absolute path", c.NetNS)
	}
	return c, nil
}

// validContainerID says whether id can be a CNI container ID (and so a pod
// UID): what libcni accepts on ADD, which also keeps it from looking like a
// command-line flag.
func validContainerID(id string) bool {
	return len(id) <= 253 && utils.ValidateContainerID(id) == nil
}

// openDirBeneath opens the directory root/elems[0]/elems[1]/..., following no
// symlink below root: an element that is a symlink fails the open.
func openDirBeneath(root string, elems ...string) (*os.File, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	path := root
	for _, e := range elems {
		path = filepath.Join(path, e)
		nfd, err := unix.Openat(fd, e, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
				err = fmt.Errorf("not a directory (a symlink?): %w", err)
			}
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		fd = nfd
	}
	return os.NewFile(uintptr(fd), path), nil
}

// readFileAt reads the regular file name in dir, not following a symlink, up
// to maxStateFile bytes.
func readFileAt(dir *os.File, name string) ([]byte, error) {
	fd, err := unix.Openat(int(dir.Fd()), name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), filepath.Join(dir.Name(), name))
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%s)", st.Mode().Type())
	}
	b, err := io.ReadAll(io.LimitReader(f, maxStateFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxStateFile {
		return nil, fmt.Errorf("larger than %d bytes", maxStateFile)
	}
	return b, nil
}

// checkCacheEntry makes sure libcni, which reads the pod's cache entry by path,
// reads a regular file beneath StateDir: an entry that is a symlink (or a
// device, a FIFO…) is removed, as no libcni ever writes one. It fails when a
// directory on the way is a symlink, or the entry is a directory.
func checkCacheEntry(stateDir, podUID string) error {
	dir, err := openDirBeneath(stateDir, cacheDirName, "results")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("CNI cache: %w", err)
	}
	defer dir.Close()
	name := networkName + "-" + podUID + "-" + ifName
	var st unix.Stat_t
	err = unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case err != nil:
		return fmt.Errorf("CNI cache entry %s: %w", filepath.Join(dir.Name(), name), err)
	case st.Mode&unix.S_IFMT == unix.S_IFREG:
		return nil
	case st.Mode&unix.S_IFMT == unix.S_IFDIR:
		return fmt.Errorf("CNI cache entry %s is a directory: remove it", filepath.Join(dir.Name(), name))
	}
	if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove CNI cache entry %s, which is not a regular file: %w", filepath.Join(dir.Name(), name), err)
	}
	return nil
}
