// Package layerfs unpacks image layers into directories in overlayfs format
// and merges such directories into one tree when overlayfs is not available.
//
// A layer directory holds the layer's files as they are, except for the OCI
// whiteouts: a `.wh.NAME` entry becomes a character device 0:0 named NAME and
// `.wh..wh..opq` becomes the xattr trusted.overlay.opaque=y on its directory.
// Such directories can be given to overlayfs directly as lowerdirs (top layer
// first), which is what agentd's default storage driver, overlay, does. With
// storage-driver vfs, or when the overlay mount fails, Apply copies them into
// one directory instead. Either way a whiteout hides only what lower layers
// have: a directory the layer itself makes at a name it whites out (before or
// after the whiteout, as `rm -rf /etc; mkdir /etc` gives `.wh.etc` and `etc/`,
// or as the parent of a later entry) is made opaque, so no lower /etc/passwd shows through it, and a file it
// makes there stays.
//
// Layers are untrusted input: Unpack refuses any entry that would write
// outside its directory (absolute names, "..", a path through a symbolic link
// the layer created, a hard link to outside) and returns an ErrUnsafePath
// error. The layer's own root entry ("./") changes nothing: the directory
// keeps the mode and owner its caller gave it. Runs of zeros in regular files
// (the holes of a sparse tar entry among them) are left as holes, so a
// sparse file takes the disk its data needs, and a Meter given to Unpack
// sees every entry and every byte written before it is written, so that its
// caller can stop a layer that grows past a disk budget. The data of each
// file starts going to disk (asynchronously) as soon as it is written, so a
// caller that syncs the layer before using it waits less. Ownership, xattrs
// other than trusted.overlay.*, device nodes and whiteouts need root; without
// it owners stay the caller's and the xattrs it may not set are skipped.
//
// This package must stay small: agent-monitor imports it. It depends on the
// standard library and golang.org/x/sys only.
package layerfs

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"

	opaqueXattr = "trusted.overlay.opaque"
)

// Meter is told what Unpack is about to write, so that its caller can hold a
// layer to a disk budget. Unpack calls it from its own goroutine, in archive
// order; an error from it stops Unpack at once, and Unpack returns it wrapped
// with the entry's name (errors.As finds it).
type Meter interface {
	// Entry is called for every entry of the archive before anything of it
	// is written, with its name and size: the logical size of a regular
	// file (a sparse file's whole length, holes included), 0 for any other
	// entry. It is called too, with size 0 and before the entry, for every
	// directory Unpack creates that the archive does not list (the parents
	// of an entry), so that a few long paths cannot make inodes by the
	// million unseen.
	Entry(name string, size int64) error
	// Wrote is called after n bytes of file data reached the filesystem.
	// Holes are neither written nor reported.
	Wrote(n int64) error
}

// Unpack extracts one uncompressed layer tar stream into dir in overlayfs
// format: OCI whiteouts `.wh.NAME` become 0:0 character devices named NAME,
// `.wh..wh..opq` becomes the xattr trusted.overlay.opaque=y on its directory.
// A whiteout hides only what lower layers have: a directory the same layer
// makes at a name it whites out (before or after the whiteout) is made
// opaque, a file it makes there stays.
//
// dir is created if it does not exist. Unpack reads r up to the end of the
// tar archive, not necessarily to EOF. It preserves mode (setuid, setgid and
// sticky bits included), owner, modification and access times, xattrs,
// symbolic and hard links, device nodes and FIFOs, except on the archive's
// root entry ("./" or "/"), whose metadata is ignored: dir is the caller's.
// Blocks of zeros in regular files are left as holes. m, if not nil, is
// asked before each entry and told of each write (see Meter). An entry that
// would write outside dir fails the whole unpack with an error wrapping
// ErrUnsafePath; what was written so far stays, so unpack into a temporary
// directory and rename it into place only on success.
func Unpack(r io.Reader, dir string, m Meter) error {
	t, err := openTree(dir)
	if err != nil {
		return err
	}
	defer t.close()

	u := unpacker{t: t, dirs: map[string]meta{}, meter: m, parents: map[string]bool{}}
	if m != nil {
		t.beforeMkdir = func(rel string) error { return m.Entry(rel+"/", 0) }
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading layer: %w", err)
		}
		if len(u.whiteouts) > 0 {
			if err := u.remakeWhitedOutParents(hdr.Name); err != nil {
				return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
			}
		}
		if m != nil {
			// The directories the entry needs first (m hears of those
			// the archive did not list), then the entry.
			if err := u.makeParents(hdr.Name); err != nil {
				return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
			}
			if err := m.Entry(hdr.Name, entrySize(hdr)); err != nil {
				return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
			}
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	}
	return u.finishDirs()
}

// makeParents creates the missing parent directories of the entry name, as
// the entry's own creation would. (Should one of them be replaced later,
// the entry makes it again, and the Meter still hears of it.)
func (u *unpacker) makeParents(name string) error {
	rel, err := cleanRel(name)
	if err != nil || rel == "." || path.Dir(rel) == "." {
		return nil // the entry itself says what is wrong, or needs no parent
	}
	parent := path.Dir(rel)
	if u.parents[parent] {
		return nil
	}
	fd, err := u.t.openDir(parent, true)
	if err != nil {
		return err
	}
	unix.Close(fd)
	u.parents[parent] = true
	return nil
}

// entrySize is what Meter.Entry is told about hdr.
func entrySize(hdr *tar.Header) int64 {
	if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeGNUSparse {
		return max(hdr.Size, 0)
	}
	return 0
}

type unpacker struct {
	t *tree
	// dirs holds the metadata of every directory entry, applied once all
	// entries are written: creating a child changes its directory's mtime,
	// and a read-only directory must stay writable until then.
	dirs    map[string]meta
	meter   Meter           // nil: no budget
	parents map[string]bool // directories makeParents made or found
	// whiteouts holds the names this layer whited out, for
	// remakeWhitedOutParents.
	whiteouts map[string]bool
	buf       []byte // copy buffer of writeFile, allocated once
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeDir && path.Clean(hdr.Name) == "/" {
		return u.dir(".", meta{}) // "/" as the root entry, as some tools write it
	}
	rel, err := cleanRel(hdr.Name)
	if err != nil {
		return err
	}
	m := headerMeta(hdr)
	base := path.Base(rel)

	if strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(rel, base, m)
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
		return u.dir(rel, m)
	case tar.TypeReg, tar.TypeGNUSparse:
		return u.create(rel, false, m, func(dirfd int, name string) error {
			return u.writeFile(dirfd, name, r, hdr.Size)
		})
	case tar.TypeSymlink:
		return u.create(rel, true, m, func(dirfd int, name string) error {
			return unix.Symlinkat(hdr.Linkname, dirfd, name)
		})
	case tar.TypeLink:
		return u.hardlink(rel, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		return u.create(rel, false, m, func(dirfd int, name string) error {
			return unix.Mknodat(dirfd, name, mode|0o600, dev)
		})
	case tar.TypeXGlobalHeader:
		return nil
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
}

func headerMeta(hdr *tar.Header) meta {
	m := meta{
		mode:  uint32(hdr.Mode) & 0o7777,
		uid:   hdr.Uid,
		gid:   hdr.Gid,
		atime: hdr.AccessTime,
		mtime: hdr.ModTime,
	}
	if m.atime.IsZero() {
		m.atime = m.mtime
	}
	const prefix = "SCHILY.xattr."
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, prefix); ok {
			if m.xattrs == nil {
				m.xattrs = map[string][]byte{}
			}
			m.xattrs[name] = []byte(v)
		}
	}
	return m
}

// whiteout turns `.wh.NAME` into a 0:0 character device NAME and
// `.wh..wh..opq` into the opaque xattr on its directory.
func (u *unpacker) whiteout(rel, base string, m meta) error {
	parent := path.Dir(rel)
	if base == whiteoutOpaque {
		return u.markOpaque(parent)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the image
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: bad whiteout name %q", ErrUnsafePath, base)
	}
	target := path.Join(parent, name)
	// A whiteout hides what lower layers have at target, never what this
	// layer made there itself (the OCI rule, whatever the archive's order):
	// the layer's own file hides the lower ones already, its own directory
	// must become opaque too.
	typ, err := u.typeAt(target)
	if err != nil {
		return err
	}
	switch typ {
	case unix.S_IFDIR:
		return u.markOpaque(target)
	case 0:
	default:
		return nil
	}
	m.mode = 0
	m.xattrs = nil
	err = u.create(target, false, m, func(dirfd int, name string) error {
		if err := unix.Mknodat(dirfd, name, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("creating whiteout (needs root): %w", err)
		}
		return nil
	})
	if err == nil {
		if u.whiteouts == nil {
			u.whiteouts = map[string]bool{}
		}
		u.whiteouts[target] = true
	}
	return err
}

// remakeWhitedOutParents turns each whiteout this layer made at a parent of
// the entry name into an opaque directory (as dir does for a directory
// entry): `.wh.etc` then `etc/passwd`, with no `etc/` between them, is a new
// /etc that hides the lower one, not an error.
func (u *unpacker) remakeWhitedOutParents(name string) error {
	rel, err := cleanRel(name)
	if err != nil {
		return nil // the entry itself says what is wrong
	}
	var done string
	for _, c := range strings.Split(path.Dir(rel), "/") {
		done = path.Join(done, c)
		if !u.whiteouts[done] {
			continue
		}
		delete(u.whiteouts, done)
		if typ, err := u.typeAt(done); err != nil || typ != whiteoutType {
			continue // replaced since, or unreachable: the entry's own walk says why
		}
		dirfd, dname, _, err := u.t.ensureDir(done)
		if err != nil {
			return err
		}
		fd, err := openDirAt(dirfd, dname)
		unix.Close(dirfd)
		if err == nil {
			err = unix.Fchmod(fd, 0o755) // as openDir makes a missing parent
			unix.Close(fd)
		}
		if err != nil {
			return err
		}
		if err := u.markOpaque(done); err != nil {
			return err
		}
	}
	return nil
}

// create replaces whatever is at rel with a new node made by mk and applies m.
func (u *unpacker) create(rel string, isLink bool, m meta, mk func(dirfd int, name string) error) error {
	dirfd, name, err := u.t.openParent(rel, true)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if err := removeAt(dirfd, name); err != nil {
		return fmt.Errorf("replacing existing %s: %w", rel, err)
	}
	delete(u.dirs, rel)
	if err := mk(dirfd, name); err != nil {
		return err
	}
	return setMeta(dirfd, name, isLink, m)
}

func (u *unpacker) dir(rel string, m meta) error {
	if rel == "." {
		// The layer's root is the store's directory, and a container's "/"
		// under overlayfs: an archive does not get to make it 0777 or give
		// it to another user.
		return nil
	}
	// A directory made where this layer put a whiteout (`.wh.etc`, then
	// `etc/`: the layer deleted the lower /etc and made a new one) must hide
	// the lower one's files: as overlayfs has it, an opaque directory.
	typ, err := u.typeAt(rel)
	if err != nil {
		return err
	}
	dirfd, _, _, err := u.t.ensureDir(rel)
	if err != nil {
		return err
	}
	unix.Close(dirfd)
	u.dirs[rel] = m
	if typ == whiteoutType {
		return u.markOpaque(rel)
	}
	return nil
}

// whiteoutType is what typeAt says of a whiteout: a 0:0 character device.
const whiteoutType = ^uint32(0)

// typeAt says what this layer has at rel: 0 for nothing, whiteoutType for a
// whiteout, or else its S_IFMT type.
func (u *unpacker) typeAt(rel string) (uint32, error) {
	dirfd, name, err := u.t.openParent(rel, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return 0, nil // the entry itself creates its parents, or says what is wrong
	}
	if err != nil {
		return 0, err
	}
	defer unix.Close(dirfd)
	st, exists, err := lstatAt(dirfd, name)
	if err != nil || !exists {
		return 0, err
	}
	typ := st.Mode & unix.S_IFMT
	if typ == unix.S_IFCHR && st.Rdev == 0 {
		return whiteoutType, nil
	}
	return typ, nil
}

// markOpaque sets the opaque xattr on the directory rel, which hides the
// lower layers' directory there under overlayfs and in Apply.
func (u *unpacker) markOpaque(rel string) error {
	fd, err := u.t.openDir(rel, true)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Fsetxattr(fd, opaqueXattr, []byte("y"), 0); err != nil {
		return fmt.Errorf("marking %s opaque (needs root and a filesystem with trusted xattrs): %w", rel, err)
	}
	return nil
}

// hardlink links rel to target, both inside the tree.
func (u *unpacker) hardlink(rel, target string) error {
	trel, err := cleanRel(target)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if trel == rel {
		return nil
	}
	tdirfd, tname, err := u.t.openParent(trel, false)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", target, err)
	}
	defer unix.Close(tdirfd)
	st, exists, err := lstatAt(tdirfd, tname)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("hard link target %q does not exist in the layer", target)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link target %q is a directory", target)
	}

	dirfd, name, err := u.t.openParent(rel, true)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if err := removeAt(dirfd, name); err != nil {
		return fmt.Errorf("replacing existing %s: %w", rel, err)
	}
	delete(u.dirs, rel)
	// Flags 0: if the target is a symlink, link the symlink, not what it names.
	return unix.Linkat(tdirfd, tname, dirfd, name, 0)
}

// finishDirs applies directory metadata, deepest first so that setting a
// child's times does not disturb its parent's.
func (u *unpacker) finishDirs() error {
	rels := make([]string, 0, len(u.dirs))
	for rel := range u.dirs {
		rels = append(rels, rel)
	}
	sortDeepestFirst(rels)
	for _, rel := range rels {
		if err := applyDirMeta(u.t, rel, u.dirs[rel]); err != nil {
			return fmt.Errorf("directory %s: %w", rel, err)
		}
	}
	return nil
}

func sortDeepestFirst(rels []string) {
	depth := func(p string) int {
		if p == "." {
			return 0
		}
		return strings.Count(p, "/") + 1
	}
	sort.Slice(rels, func(i, j int) bool {
		if di, dj := depth(rels[i]), depth(rels[j]); di != dj {
			return di > dj
		}
		return rels[i] < rels[j]
	})
}

// applyDirMeta sets m on the directory rel, if it is still a directory.
func applyDirMeta(t *tree, rel string, m meta) error {
	fd, err := t.openDir(rel, false)
	if err != nil {
		// Replaced later by a file or a symlink, or removed: nothing to do.
		if errors.Is(err, ErrUnsafePath) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil
		}
		var st unix.Stat_t
		if rel != "." && unix.Fstatat(t.fd, rel, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil
		}
		return err
	}
	defer unix.Close(fd)
	return setMeta(fd, "", false, m)
}

// holeBlock is the unit of hole detection: a filesystem block on the usual
// filesystems, and the granularity at which they allocate.
const holeBlock = 4096

// writeFile creates name in dirfd, which must not exist, and fills it with
// the size bytes of r, leaving every holeBlock-aligned block of zeros as a
// hole (the holes of a sparse tar entry arrive as zeros too).
func (u *unpacker) writeFile(dirfd int, name string, r io.Reader, size int64) error {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := fileFromFd(fd, name)
	if u.buf == nil {
		u.buf = make([]byte, 32*holeBlock)
	}
	if err := copySparse(f, r, size, u.buf, u.meter); err != nil {
		f.Close()
		return err
	}
	if size > 0 {
		// Start writing the file's data to disk now, without waiting for
		// it: the caller syncs the filesystem before it uses the layer,
		// and that sync then has little left to wait for. (Best effort:
		// a filesystem that does not support it is synced as before.)
		_ = unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
	return f.Close()
}

// copySparse copies size bytes of r into the empty file f, skipping blocks of
// zeros, and sets f's length to size. buf's length is a multiple of holeBlock.
func copySparse(f *os.File, r io.Reader, size int64, buf []byte, m Meter) error {
	var off int64
	for off < size {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-off)])
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		// Write each run of blocks that are not all zeros with one call.
		chunk := buf[:n]
		for start := 0; start < len(chunk); {
			for start < len(chunk) && isZero(chunk[start:min(start+holeBlock, len(chunk))]) {
				start += holeBlock
			}
			end := start
			for end < len(chunk) && !isZero(chunk[end:min(end+holeBlock, len(chunk))]) {
				end += holeBlock
			}
			end = min(end, len(chunk))
			if start >= end {
				break
			}
			if _, err := f.WriteAt(chunk[start:end], off+int64(start)); err != nil {
				return err
			}
			if m != nil {
				if err := m.Wrote(int64(end - start)); err != nil {
					return err
				}
			}
			start = end
		}
		off += int64(n)
	}
	// A file that ends in a hole gets its length here.
	return f.Truncate(size)
}

var zeroBlock [holeBlock]byte

func isZero(b []byte) bool { return bytes.Equal(b, zeroBlock[:len(b)]) }
