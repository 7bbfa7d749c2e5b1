package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/crashpoint"
)

// What a registry pull (package image/pull) needs of the store: a place to
// download layer blobs to that the store's cleanup respects while the pull
// runs and removes once it does not, a way to skip layers the store has, and
// ImportImage, which takes the pulled image through the same import path as
// an archive's images (same verification, same limits, same commit).

// stagingPrefix names the staging directories of pulls in tmp/.
const stagingPrefix = "pull-"

// Staging is a directory in the store's tmp/ where a pull downloads blobs
// before ImportImage unpacks them. It is flock(2)ed while open: the cleanup
// of tmp/ (every import, remove, and Open) skips a locked staging directory
// and deletes one whose pull has gone (closed, or killed with its process),
// so a pull interrupted in any way leaves nothing behind once the store is
// next written or opened.
type Staging struct {
	Dir string
	f   *os.File // the open directory, flock'ed
}

// NewStaging makes a new staging directory. Close it when the pull is done.
func (s *Store) NewStaging() (*Staging, error) {
	for attempt := 0; ; attempt++ {
		d, err := os.MkdirTemp(s.tmpDir(), stagingPrefix)
		if err != nil {
			return nil, fmt.Errorf("making a staging directory in %s: %w", s.tmpDir(), err)
		}
		f, err := os.OpenFile(d, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("opening staging directory: %w", err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			return nil, fmt.Errorf("locking staging directory %s: %w", d, err)
		}
		// A cleanup of tmp/ may have deleted the directory between its
		// creation and the lock: it is ours only if it is still there.
		var st, fst unix.Stat_t
		if unix.Lstat(d, &st) == nil && unix.Fstat(int(f.Fd()), &fst) == nil && st.Ino == fst.Ino && st.Dev == fst.Dev {
			return &Staging{Dir: d, f: f}, nil
		}
		f.Close()
		if attempt == 3 {
			return nil, fmt.Errorf("staging directory %s keeps being removed", d)
		}
	}
}

// Close removes the staging directory and what is in it.
func (st *Staging) Close() error {
	err := os.RemoveAll(st.Dir)
	if cerr := st.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// stagingInUse reports whether the tmp/ entry name is the staging directory
// of a running pull. A directory it cannot tell about is taken as not in
// use.
func (s *Store) stagingInUse(name string) bool {
	if !strings.HasPrefix(name, stagingPrefix) {
		return false
	}
	f, err := os.OpenFile(filepath.Join(s.tmpDir(), name), os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB), unix.EWOULDBLOCK)
}

// CheckDownload reports, with a *LimitError, whether blobs of n bytes in all
// may be downloaded into a Staging directory for the image named image: not
// more than image-max-size (a compressed layer is no larger than its content,
// give or take a few bytes), and not so much that the filesystem would be left
// below its reserve. A pull checks before it downloads; the unpacking that
// follows is held to the limits as an import is.
func (s *Store) CheckDownload(image string, n int64) error {
	l := s.Limits()
	if l.MaxImageSize > 0 && n > l.MaxImageSize {
		return &LimitError{Setting: "image-max-size", Limit: l.MaxImageSize, Image: image, Dir: s.dir}
	}
	var st unix.Statfs_t
	if err := s.statfs(s.tmpDir(), &st); err != nil {
		return fmt.Errorf("looking at the free space of %s: %w", s.tmpDir(), err)
	}
	want, _ := reserve(&st)
	if avail := st.Bavail * uint64(st.Bsize); n < 0 || uint64(n)+want > avail {
		return &LimitError{Limit: int64(want), InUse: int64(avail), Image: image, Dir: s.dir}
	}
	return nil
}

// HasLayer reports whether the layer with diffID is unpacked in the store,
// so a pull need not download it. A layer may still be deleted by a Remove
// afterwards; ImportImage then asks the image for it.
func (s *Store) HasLayer(diffID v1.Hash) bool {
	if diffID.Algorithm != "sha256" || !fullID().MatchString(diffID.String()) {
		return false
	}
	fi, err := os.Lstat(s.layerPath(diffID))
	return err == nil && fi.IsDir()
}

// ImportImage adds img, an image a registry pull fetched, to the store under
// names (normalised as NormalizeName does), as Import adds an archive's
// images: its manifest, config and layers checked against their digests
// (layers also against their diff IDs), unpacked within the store's Limits,
// committed by replacing the index. Layers the store has are not read; the
// others are read once, through img's Compressed (or Uncompressed, for
// uncompressed media types), while they are unpacked, a few at once, started
// in manifest order — so an img whose layers are still downloading lets
// unpacking overlap with the download. On error, nothing of the image is left in the store. It holds the
// store's lock throughout; ctx cancels the wait for it and the import.
func (s *Store) ImportImage(ctx context.Context, img v1.Image, names []string, opts ImportOptions) (_ Image, err error) {
	digest, err := img.Digest()
	if err != nil {
		return Image{}, fmt.Errorf("reading manifest: %w", err)
	}
	c := &candidate{what: "image " + digest.String(), img: img, want: &digest, parallel: unpackParallel(), blobsVerified: opts.BlobsVerified}
	for _, n := range names {
		nn, err := NormalizeName(n)
		if err != nil {
			return Image{}, err
		}
		c.names = append(c.names, nn)
	}
	if len(c.names) > 0 {
		c.what = strings.Join(c.names, ", ")
	}

	limits := s.Limits()
	unlock, err := s.lock(ctx)
	if err != nil {
		return Image{}, err
	}
	defer unlock()
	if err := s.cleanTmp(); err != nil {
		return Image{}, fmt.Errorf("cleaning %s: %w", s.tmpDir(), err)
	}
	idx, err := s.loadIndex()
	if err != nil {
		return Image{}, err
	}
	defer func() {
		if err != nil {
			if old, lerr := s.loadIndex(); lerr == nil {
				s.collect(old)
			}
		}
	}()
	b := &budget{limits: limits}
	if limits.MaxStoreSize > 0 {
		if b.store, err = s.storeSize(idx); err != nil {
			return Image{}, err
		}
		b.storeBefore = b.store
	}
	m := newMeter(b, s.tmpDir(), s.statfs)
	id, changed, err := s.importImage(ctx, idx, c, m)
	if err != nil {
		if le := s.limitError(err, "", c); le != nil {
			return Image{}, le
		}
		return Image{}, fmt.Errorf("importing %s: %w", c.what, err)
	}
	if changed {
		if err := s.saveIndex(idx); err != nil {
			return Image{}, fmt.Errorf("writing image store index: %w", err)
		}
		crashpoint.Hit("image-index-written")
	}
	out, err := s.image(idx, id, idx.namesByID()[id])
	if err != nil {
		return Image{}, err
	}
	return *out, nil
}

// ImportOptions change how ImportImage reads an image.
type ImportOptions struct {
	// BlobsVerified says that the reader Compressed returns for each of the
	// image's layers checks the blob against the layer's digest and size
	// itself, as a registry pull's does while it downloads: it fails,
	// with an error wrapping ErrDigestMismatch, instead of returning
	// io.EOF unless every byte it returned is the blob's. The store then
	// does not hash the blobs a second time; it still reads each to its
	// end, and checks its size and the diff ID of its content.
	BlobsVerified bool
}

// unpackParallel is how many layers ImportImage unpacks at once: unpacking
// is decompression (CPU) and writes (disk), and a pull's layers arrive in
// parallel.
func unpackParallel() int { return min(max(runtime.GOMAXPROCS(0), 2), 4) }

// isNotExist is errors.Is(err, fs.ErrNotExist), for the staging cleanup.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
