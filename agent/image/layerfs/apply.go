package layerfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Apply copies overlay-format layers (bottom first) into dest as one merged
// tree, honouring whiteouts and opaque directories: the "vfs" fallback for
// when overlayfs cannot be mounted.
//
// dest is created if needed and may already hold a tree (Apply then works
// like mounting the layers over it). Owners, modes, times, xattrs (except
// trusted.overlay.*), symlinks, device nodes and FIFOs are copied. Files that
// are hard links of each other inside one layer stay hard links of each
// other in dest; overlayfs format has no links across layers. Regular files
// are copied with copy_file_range, so filesystems that support reflinks share
// their data, and only where they hold data: a sparse file stays sparse.
// Reading the opaque xattr needs root: without it, opaque
// directories are merged like ordinary ones.
//
// The layers are trusted (they come from the image store), dest is not
// assumed clean: Apply never follows a symbolic link in dest, so a symlink a
// lower layer put there cannot redirect a write out of dest.
func Apply(dest string, layers []string) error {
	t, err := openTree(dest)
	if err != nil {
		return err
	}
	defer t.close()
	a := applier{t: t, dirs: map[string]meta{}}
	for _, l := range layers {
		if err := a.layer(l); err != nil {
			return fmt.Errorf("applying layer %s to %s: %w", l, dest, err)
		}
	}
	rels := make([]string, 0, len(a.dirs))
	for rel := range a.dirs {
		rels = append(rels, rel)
	}
	sortDeepestFirst(rels)
	for _, rel := range rels {
		if err := applyDirMeta(t, rel, a.dirs[rel]); err != nil {
			return fmt.Errorf("directory %s in %s: %w", rel, dest, err)
		}
	}
	return nil
}

type applier struct {
	t *tree
	// dirs holds each directory's metadata from the topmost layer that has
	// it, applied at the end (see unpacker.dirs).
	dirs map[string]meta
}

type devIno struct{ dev, ino uint64 }

func (a *applier) layer(dir string) error {
	// First path in dest of each inode of this layer with several links.
	links := map[devIno]string{}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", p)
		}
		m, err := statMeta(p, st)
		if err != nil {
			return err
		}
		if err := a.entry(p, rel, st, m, links); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		return nil
	})
}

func (a *applier) entry(src, rel string, st *syscall.Stat_t, m meta, links map[devIno]string) error {
	typ := st.Mode & unix.S_IFMT
	if rel == "." {
		if typ != unix.S_IFDIR {
			return errors.New("layer is not a directory")
		}
		a.dirs["."] = m
		return nil
	}
	if typ == unix.S_IFDIR {
		return a.dir(src, rel, m)
	}
	if typ == unix.S_IFCHR && st.Rdev == 0 {
		return a.whiteout(rel)
	}

	dirfd, name, err := a.t.openParent(rel, true)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if err := a.remove(dirfd, name, rel); err != nil {
		return fmt.Errorf("replacing what lower layers put there: %w", err)
	}

	key := devIno{uint64(st.Dev), st.Ino}
	if typ == unix.S_IFREG && st.Nlink > 1 {
		if first, ok := links[key]; ok {
			return a.link(first, dirfd, name)
		}
		links[key] = rel
	}

	switch typ {
	case unix.S_IFREG:
		err = copyFile(src, dirfd, name)
	case unix.S_IFLNK:
		var target string
		if target, err = os.Readlink(src); err == nil {
			err = unix.Symlinkat(target, dirfd, name)
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		err = unix.Mknodat(dirfd, name, typ|0o600, int(st.Rdev))
	default:
		err = fmt.Errorf("unsupported file type %o", typ)
	}
	if err != nil {
		return err
	}
	return setMeta(dirfd, name, typ == unix.S_IFLNK, m)
}

func (a *applier) dir(src, rel string, m meta) error {
	dirfd, name, existed, err := a.t.ensureDir(rel)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if existed && isOpaque(src) {
		if err := clearDirAt(dirfd, name); err != nil {
			return fmt.Errorf("clearing opaque directory: %w", err)
		}
		a.forget(rel, false)
	}
	a.dirs[rel] = m
	return nil
}

func (a *applier) whiteout(rel string) error {
	dirfd, name, err := a.t.openParent(rel, false)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil // nothing below to hide
	}
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	return a.remove(dirfd, name, rel)
}

// remove removes what a lower layer put at rel (name in dirfd), if anything.
func (a *applier) remove(dirfd int, name, rel string) error {
	st, exists, err := lstatAt(dirfd, name)
	if err != nil || !exists {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		a.forget(rel, true)
	}
	return removeAt(dirfd, name)
}

// forget drops the recorded directory metadata below rel, and of rel itself
// when self is set, once those directories are gone.
func (a *applier) forget(rel string, self bool) {
	for r := range a.dirs {
		if (self && r == rel) || strings.HasPrefix(r, rel+"/") {
			delete(a.dirs, r)
		}
	}
}

// link makes name in dirfd a hard link of first, a path already copied to dest.
func (a *applier) link(first string, dirfd int, name string) error {
	tdirfd, tname, err := a.t.openParent(first, false)
	if err != nil {
		return err
	}
	defer unix.Close(tdirfd)
	return unix.Linkat(tdirfd, tname, dirfd, name, 0)
}

func isOpaque(p string) bool {
	var buf [1]byte
	n, err := unix.Lgetxattr(p, opaqueXattr, buf[:])
	return err == nil && n == 1 && buf[0] == 'y'
}

// statMeta reads what setMeta writes back from the layer file p.
func statMeta(p string, st *syscall.Stat_t) (meta, error) {
	m := meta{
		mode:  st.Mode & 0o7777,
		uid:   int(st.Uid),
		gid:   int(st.Gid),
		atime: time.Unix(st.Atim.Unix()),
		mtime: time.Unix(st.Mtim.Unix()),
	}
	xattrs, err := listXattrs(p)
	if err != nil {
		return m, err
	}
	m.xattrs = xattrs
	return m, nil
}

// listXattrs returns the xattrs of p (not following a symlink) that the
// caller may read.
func listXattrs(p string) (map[string][]byte, error) {
	size, err := unix.Llistxattr(p, nil)
	if err != nil || size == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, size)
	size, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, fmt.Errorf("listing xattrs of %s: %w", p, err)
	}
	var out map[string][]byte
	for _, name := range strings.Split(strings.TrimRight(string(buf[:size]), "\x00"), "\x00") {
		if name == "" || skipXattr(name) {
			continue
		}
		vsize, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
		}
		val := make([]byte, vsize)
		if vsize > 0 {
			if vsize, err = unix.Lgetxattr(p, name, val); err != nil {
				return nil, fmt.Errorf("reading xattr %s of %s: %w", name, p, err)
			}
		}
		if out == nil {
			out = map[string][]byte{}
		}
		out[name] = val[:vsize]
	}
	return out, nil
}

// copyFile copies the regular file src to a new file name in dirfd, keeping
// its holes (see copyExtents).
func copyFile(src string, dirfd int, name string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	out := fileFromFd(fd, name)
	if err := copyExtents(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyExtents copies the data of in into the empty file out and gives out
// in's length, so that out has holes where in has them: a sparse file in a
// layer (1 TiB of holes takes a few blocks in the store) must not become
// that much disk in every container's vfs copy, as a plain copy would make
// it (copy_file_range without reflinks writes the zeros it reads). The data
// extents are found with SEEK_DATA/SEEK_HOLE; a filesystem that cannot tell
// (EINVAL) has its file copied whole. Each extent goes through
// copy_file_range, which shares the blocks where the filesystem can
// (reflinks), and falls back to reading and writing.
func copyExtents(out, in *os.File) error {
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	ifd := int(in.Fd())
	for off := int64(0); off < size; {
		start, err := unix.Seek(ifd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole up to the end
		}
		if errors.Is(err, unix.EINVAL) {
			start, err = off, nil // no SEEK_DATA here: all data
		}
		if err != nil {
			return fmt.Errorf("finding data in %s: %w", in.Name(), err)
		}
		end, err := unix.Seek(ifd, start, unix.SEEK_HOLE)
		if errors.Is(err, unix.EINVAL) {
			end, err = size, nil
		}
		if err != nil {
			return fmt.Errorf("finding a hole in %s: %w", in.Name(), err)
		}
		end = min(end, size) // the file may have grown since Stat
		if err := copyRange(out, in, start, end-start); err != nil {
			return err
		}
		off = end
	}
	// A file that ends in a hole gets its length here.
	return out.Truncate(size)
}

// copyRange copies n bytes at off of in to the same offset of out.
func copyRange(out, in *os.File, off, n int64) error {
	roff, woff := off, off
	for n > 0 {
		c, err := unix.CopyFileRange(int(in.Fd()), &roff, int(out.Fd()), &woff, int(min(n, 1<<30)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				_, err = io.Copy(io.NewOffsetWriter(out, woff), io.NewSectionReader(in, roff, n))
			}
			return err
		}
		if c == 0 {
			return fmt.Errorf("copying %s: %w", in.Name(), io.ErrUnexpectedEOF)
		}
		n -= int64(c)
	}
	return nil
}
