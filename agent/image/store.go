// Package image is agentd's local image store: it imports image archives
// (OCI image layouts and `docker save` output), unpacks each layer once for
// overlayfs, and resolves image references to an image's config and layer
// directories. Images arrive as archives (Import) or from a registry
// (package image/pull, through ImportImage).
//
// The store lives in <root>/images, so agentd's `root` setting moves it;
// `storage-driver` decides how a container's root filesystem is made from the
// layer directories (an overlay mount, or layerfs.Apply for vfs), not how
// they are stored. On disk:
//
//	<root>/images/
//	  lock                        flock(2)ed by Import and Remove, so that two
//	                              processes (agentd, agentctl) never write at once
//	  images.json                 the index: image ID → manifest digest, size,
//	                              layer diff IDs; name → image ID; layer diff
//	                              ID → unpacked size. Replaced atomically
//	                              (package atomicfile: temp file, fsync,
//	                              rename, fsync of the directory).
//	  blobs/sha256/<hex>          manifests and image configs, by digest
//	  layers/sha256/<diffid-hex>/ one unpacked layer (overlayfs format, see
//	                              package layerfs), named by its diff ID and
//	                              shared by every image that has it
//	  tmp/                        staging for imports, and layers being deleted;
//	                              emptied by the next writer and by Open when
//	                              no writer runs
//	  tmp/pull-*/                 a registry pull's downloads (see Staging):
//	                              kept while the pull runs (flock'ed), removed
//	                              like the rest once it does not
//
// Every directory of the store is 0700 and root's (Open makes it so, whatever
// was there before): overlayfs reads lower layers with the credentials of
// whoever mounted it, root, so nobody else needs to look in. A layer
// directory itself is 0755 and root's, as a container's "/" should be; the
// "./" entry of a layer archive does not change it.
//
// Images are untrusted, and a small archive can unpack to any size: imports
// are held to Limits (agentd's image-max-size and image-store-max-size), and
// stop before the store's filesystem runs low (see LimitError). An import
// that fails, for that or any other reason, leaves nothing behind.
//
// An import commits by replacing images.json, last: a layer is unpacked
// into tmp/, the filesystem synced, and the layer renamed into layers/
// (crash points image-layer-unpacked, image-layer-committed, one hit per
// layer); the config and manifest blobs are written atomically
// (image-blobs-written); the new index is written to a temporary file and
// synced (image-index-synced), then renamed over the old one
// (image-index-written). Until that rename no reader sees anything of the
// import, and a kill -9 or a power loss before it leaves only tmp/'s
// content and layers and blobs the index does not name: the next Open
// (agentd's start, any agentctl --root command) deletes them, as does the
// next Remove or failed import. A layer directory under layers/ is always
// whole: it appears by rename once synced, and is moved into tmp/ before it
// is deleted (image-gc-layer-moved), so an import that finds one there uses
// it as it is.
//
// Compressed layer blobs are not kept: a layer is verified against its
// digest and diff ID while it is unpacked into tmp/, renamed into layers/
// only when both match, and the blob is then dropped. So images cannot be
// exported or pushed from the store again; they can be re-imported.
//
// An image is identified by its ID, the digest of its config. Names are
// normalised (see NormalizeName) and point at one image each; importing an
// image under a name another image has moves the name, and the other image
// stays in the store without it (as `docker load` leaves a dangling image).
// Removing an image's last name removes the image, and layers and blobs no
// image refers to any more are deleted.
//
// Readers (List, Get) take no lock: they read images.json, which is only
// ever replaced whole, and layer directories only appear and go by rename. Nothing
// stops Remove from deleting layers a running container uses; callers that
// remove images must check that first.
package image

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
)

// ErrNotFound is wrapped by errors for a reference no image in the store has.
var ErrNotFound = errors.New("no such image")

// ErrDigestMismatch is wrapped by import errors for an archive whose content
// does not match the digests that name it (a corrupted or tampered archive).
var ErrDigestMismatch = errors.New("content does not match its digest")

// Store is a content-addressed image store under one directory (agentd's
// <root>/images). Its methods are safe for concurrent use, also by several
// processes sharing the directory.
type Store struct {
	dir string // absolute

	mu     sync.Mutex // guards limits
	limits Limits

	statfs func(path string, st *unix.Statfs_t) error // unix.Statfs; tests fake it
}

// Image is an image in the store.
type Image struct {
	ID    string   // config digest, "sha256:<hex>"
	Names []string // normalised, sorted, e.g. "localhost/busybox:latest"
	// Digest is the manifest digest. An image from a `docker save` archive
	// without an OCI index has no manifest; the store makes one that lists
	// the layers uncompressed (as docker ≥ 25 archives do), and this is its
	// digest.
	Digest string
	// Size is the sum of the layer sizes the manifest gives: compressed sizes
	// for gzip or zstd layers, uncompressed sizes for uncompressed ones (all
	// layers of `docker save` archives, for one). It is not `docker images`'
	// unpacked size.
	Size    int64
	Created time.Time
	Config  Config
	// Layers are the absolute paths of the unpacked layer directories,
	// bottom layer first: overlayfs lowerdirs in reverse order.
	Layers []string
}

// Config is the part of the OCI image config a container is started from.
type Config struct {
	Entrypoint   []string
	Cmd          []string
	Env          []string
	WorkingDir   string
	User         string
	ExposedPorts map[string]struct{} // "80/tcp"
}

// Open opens the store in dir, creating it if needed, with DefaultLimits.
// It makes the store's directories 0700 and its layer directories 0755 if
// they are not and, if no other process is writing, removes what an
// interrupted import or remove left: tmp/'s content, and the layers and
// blobs the index does not refer to.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: abs, limits: DefaultLimits, statfs: unix.Statfs}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("creating image store %s: %w", abs, err)
	}
	for _, d := range []string{
		abs,
		filepath.Join(abs, "blobs"),
		filepath.Join(abs, "blobs", "sha256"),
		filepath.Join(abs, "layers"),
		filepath.Join(abs, "layers", "sha256"),
		s.tmpDir(),
	} {
		if err := ensureDir(d, storeDirMode); err != nil {
			return nil, fmt.Errorf("image store %s: %w", abs, err)
		}
	}
	if err := s.fixLayerDirs(); err != nil {
		return nil, fmt.Errorf("image store %s: %w", abs, err)
	}
	idx, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	if unlock, err := s.tryLock(); err == nil {
		// What a crashed or killed import or remove left: its staging in
		// tmp/, layers and blobs it put in place before it could write the
		// index (or after it wrote one without them), a temporary index. A
		// writer that holds the lock does this itself.
		err = s.collect(idx)
		if err == nil {
			err = atomicfile.RemoveStale(abs)
		}
		unlock()
		if err != nil {
			return nil, fmt.Errorf("image store %s: removing what an interrupted import or remove left: %w", abs, err)
		}
	}
	return s, nil
}

// storeDirMode is the mode of every directory of the store, layerDirMode of
// a layer's own directory (its "/").
const (
	storeDirMode = 0o700
	layerDirMode = 0o755
)

// ensureDir makes p a directory of mode and of this process's user,
// whatever was there: it is created if missing and its mode and owner are
// changed if they differ. A symbolic link there is an error, not followed.
func ensureDir(p string, mode uint32) error {
	err := os.Mkdir(p, os.FileMode(mode))
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return &fs.PathError{Op: "lstat", Path: p, Err: err}
	}
	return fixDir(p, &st, mode)
}

// fixDir gives the directory p (st its lstat) mode and this process's user.
func fixDir(p string, st *unix.Stat_t, mode uint32) error {
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory (mode %o); move it away", p, st.Mode)
	}
	if uid, gid := os.Geteuid(), os.Getegid(); int(st.Uid) != uid || int(st.Gid) != gid {
		if err := unix.Lchown(p, uid, gid); err != nil {
			return &fs.PathError{Op: "chown", Path: p, Err: err}
		}
	}
	if st.Mode&0o7777 != mode {
		// Not through a symlink: p was lstat'ed as a directory, and only
		// root writes the store.
		if err := unix.Chmod(p, mode); err != nil {
			return &fs.PathError{Op: "chmod", Path: p, Err: err}
		}
	}
	return nil
}

// fixLayerDirs gives every layer directory layerDirMode and root as its
// owner: a store written before layers' "./" entries were ignored may have
// taken them from the archive.
func (s *Store) fixLayerDirs() error {
	algs, err := os.ReadDir(filepath.Join(s.dir, "layers"))
	if err != nil {
		return err
	}
	for _, alg := range algs {
		algDir := filepath.Join(s.dir, "layers", alg.Name())
		var st unix.Stat_t
		if err := unix.Lstat(algDir, &st); err != nil {
			return err
		}
		if err := fixDir(algDir, &st, storeDirMode); err != nil {
			return err
		}
		layers, err := os.ReadDir(algDir)
		if err != nil {
			return err
		}
		for _, l := range layers {
			p := filepath.Join(algDir, l.Name())
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			if err := fixDir(p, &st, layerDirMode); err != nil {
				return err
			}
		}
	}
	return nil
}

// SetLimits changes the limits of the imports that start from now on.
func (s *Store) SetLimits(l Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = l
}

// Limits returns the limits imports are held to.
func (s *Store) Limits() Limits {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limits
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// List returns every image in the store, sorted by name; images without a
// name come last, by ID.
func (s *Store) List() ([]Image, error) {
	idx, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	names := idx.namesByID()
	out := make([]Image, 0, len(idx.Images))
	for id := range idx.Images {
		img, err := s.image(idx, id, names[id])
		if err != nil {
			return nil, err
		}
		out = append(out, *img)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if (len(a.Names) == 0) != (len(b.Names) == 0) {
			return len(a.Names) > 0
		}
		if len(a.Names) > 0 && a.Names[0] != b.Names[0] {
			return a.Names[0] < b.Names[0]
		}
		return a.ID < b.ID
	})
	return out, nil
}

// Get returns the image ref names: a name (normalised as NormalizeName
// does; `name@sha256:…` matches the image with that manifest digest and a
// name in that repository), a full ID "sha256:<hex>", or a unique prefix of
// at least 4 hex digits of an ID (with or without "sha256:"). A name wins
// over an ID prefix that is also a valid name, as in Docker. An unknown ref
// gives an error wrapping ErrNotFound and naming ref.
func (s *Store) Get(ref string) (*Image, error) {
	idx, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.resolve(ref)
	if err != nil {
		return nil, err
	}
	return s.image(idx, m.id, idx.namesByID()[m.id])
}

// Remove removes ref (see Get for its forms). A name is removed from its
// image, and the image goes when that was its last name; an ID or a digest
// reference removes the image with all its names. Layers and blobs that no
// image refers to any more are then deleted.
func (s *Store) Remove(ref string) error {
	unlock, err := s.lock(context.Background())
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.loadIndex()
	if err != nil {
		return err
	}
	m, err := idx.resolve(ref)
	if err != nil {
		return err
	}
	if m.name != "" {
		delete(idx.Names, m.name)
	} else {
		for n, id := range idx.Names {
			if id == m.id {
				delete(idx.Names, n)
			}
		}
	}
	if len(idx.namesByID()[m.id]) == 0 {
		delete(idx.Images, m.id)
	}
	if err := s.saveIndex(idx); err != nil {
		return err
	}
	return s.collect(idx)
}

// image builds the Image with ID id from the index and its config blob.
func (s *Store) image(idx *index, id string, names []string) (*Image, error) {
	rec := idx.Images[id]
	h, err := v1.NewHash(id)
	if err != nil {
		return nil, fmt.Errorf("image store %s: bad image ID %q in images.json: %w", s.dir, id, err)
	}
	raw, err := os.ReadFile(s.blobPath(h))
	if err != nil {
		return nil, fmt.Errorf("image %s: reading its config: %w (re-import the image to repair the store)", id, err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("image %s: parsing its config %s: %w", id, s.blobPath(h), err)
	}
	img := &Image{
		ID:      id,
		Names:   append([]string(nil), names...),
		Digest:  rec.Digest,
		Size:    rec.Size,
		Created: cf.Created.Time,
		Config: Config{
			Entrypoint:   cf.Config.Entrypoint,
			Cmd:          cf.Config.Cmd,
			Env:          cf.Config.Env,
			WorkingDir:   cf.Config.WorkingDir,
			User:         cf.Config.User,
			ExposedPorts: cf.Config.ExposedPorts,
		},
	}
	sort.Strings(img.Names)
	for _, l := range rec.Layers {
		lh, err := v1.NewHash(l)
		if err != nil {
			return nil, fmt.Errorf("image %s: bad layer diff ID %q in images.json: %w", id, l, err)
		}
		img.Layers = append(img.Layers, s.layerPath(lh))
	}
	return img, nil
}

func (s *Store) indexPath() string { return filepath.Join(s.dir, "images.json") }
func (s *Store) tmpDir() string    { return filepath.Join(s.dir, "tmp") }

func (s *Store) blobPath(h v1.Hash) string {
	return filepath.Join(s.dir, "blobs", h.Algorithm, h.Hex)
}

func (s *Store) layerPath(diffID v1.Hash) string {
	return filepath.Join(s.dir, "layers", diffID.Algorithm, diffID.Hex)
}

// index is images.json.
type index struct {
	Version int                `json:"version"`
	Images  map[string]*record `json:"images"` // by ID
	Names   map[string]string  `json:"names"`  // normalised name → ID
	// LayerSizes are the unpacked sizes of the layers (chargedSize's
	// count), by diff ID. A layer without one (a store written before
	// sizes were kept) is measured when a limit needs its size.
	LayerSizes map[string]int64 `json:"layerSizes,omitempty"`
}

// record is what the index keeps about one image; the rest is in its config.
type record struct {
	Digest string   `json:"digest"` // manifest digest
	Size   int64    `json:"size"`
	Layers []string `json:"layers"` // diff IDs, bottom first
}

const indexVersion = 1

func (s *Store) loadIndex() (*index, error) {
	idx := &index{Version: indexVersion, Images: map[string]*record{}, Names: map[string]string{}, LayerSizes: map[string]int64{}}
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, fs.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, idx); err != nil {
		return nil, fmt.Errorf("image store index %s is corrupt: %w (move it away and re-import the images)", s.indexPath(), err)
	}
	if idx.Version != indexVersion {
		return nil, fmt.Errorf("image store index %s has version %d; this agentd reads version %d", s.indexPath(), idx.Version, indexVersion)
	}
	if idx.Images == nil {
		idx.Images = map[string]*record{}
	}
	if idx.Names == nil {
		idx.Names = map[string]string{}
	}
	if idx.LayerSizes == nil {
		idx.LayerSizes = map[string]int64{}
	}
	for n, id := range idx.Names {
		if idx.Images[id] == nil {
			delete(idx.Names, n) // cannot happen through this package; never fatal
		}
	}
	return idx, nil
}

func (s *Store) saveIndex(idx *index) error {
	used := map[string]bool{}
	for _, rec := range idx.Images {
		for _, l := range rec.Layers {
			used[l] = true
		}
	}
	for l := range idx.LayerSizes {
		if !used[l] {
			delete(idx.LayerSizes, l)
		}
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.indexPath(), append(b, '\n'), 0o600,
		atomicfile.BeforeRename(func() { crashpoint.Hit("image-index-synced") }))
}

func (idx *index) namesByID() map[string][]string {
	m := map[string][]string{}
	for n, id := range idx.Names {
		m[id] = append(m[id], n)
	}
	return m
}

// match is how a reference resolved: to an image, through a name or not.
type match struct {
	id   string
	name string // the normalised name, when ref resolved as a tag name
}

var (
	fullID   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^sha256:[0-9a-f]{64}$`) })
	idPrefix = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(sha256:)?[0-9a-f]{4,64}$`) })
)

// resolve finds the image ref names; see Get.
func (idx *index) resolve(ref string) (match, error) {
	if fullID().MatchString(ref) {
		if idx.Images[ref] != nil {
			return match{id: ref}, nil
		}
		return match{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
	}
	if strings.HasPrefix(ref, "sha256:") && idPrefix().MatchString(ref) {
		return idx.byPrefix(ref)
	}
	r, perr := parseRef(ref)
	if perr == nil {
		n := canonical(r)
		if id, ok := idx.Names[n]; ok {
			return match{id: id, name: n}, nil
		}
		if d, ok := r.(name.Digest); ok {
			repo := repoName(r.Context())
			for id, rec := range idx.Images {
				if rec.Digest != d.DigestStr() {
					continue
				}
				for n, nid := range idx.Names {
					if nid == id && strings.HasPrefix(n, repo+":") {
						return match{id: id}, nil
					}
				}
			}
		}
	}
	if idPrefix().MatchString(ref) {
		return idx.byPrefix(ref)
	}
	if perr != nil {
		return match{}, perr
	}
	return match{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
}

func (idx *index) byPrefix(ref string) (match, error) {
	prefix := "sha256:" + strings.TrimPrefix(ref, "sha256:")
	var found []string
	for id := range idx.Images {
		if strings.HasPrefix(id, prefix) {
			found = append(found, id)
		}
	}
	switch len(found) {
	case 0:
		return match{}, fmt.Errorf("%w: %s", ErrNotFound, ref)
	case 1:
		return match{id: found[0]}, nil
	default:
		sort.Strings(found)
		return match{}, fmt.Errorf("image ID prefix %q is ambiguous: it matches %s; give more digits", ref, strings.Join(found, ", "))
	}
}

// collect deletes the blobs and layers no image in idx refers to, and
// whatever an interrupted import left in tmp/. The caller holds the lock.
//
// A layer directory is moved into tmp/ before it is deleted: a crash half way
// through deleting it must not leave a part of it under layers/, where the
// next import of an image with that layer would take it for whole.
func (s *Store) collect(idx *index) error {
	blobs, layers := map[string]bool{}, map[string]bool{}
	for id, rec := range idx.Images {
		blobs[id], blobs[rec.Digest] = true, true
		for _, l := range rec.Layers {
			layers[l] = true
		}
	}
	var errs []error
	movedLayers := false
	for _, kind := range []struct {
		dir  string
		keep map[string]bool
	}{{"blobs", blobs}, {"layers", layers}} {
		algs, err := os.ReadDir(filepath.Join(s.dir, kind.dir))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, alg := range algs {
			algDir := filepath.Join(s.dir, kind.dir, alg.Name())
			entries, err := os.ReadDir(algDir)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			moved := false
			for _, e := range entries {
				if kind.keep[alg.Name()+":"+e.Name()] {
					continue
				}
				p := filepath.Join(algDir, e.Name())
				if kind.dir == "blobs" || !e.IsDir() {
					// A file goes at once, whole: blobs, and temporary
					// files of blobs that a crash left.
					if err := os.RemoveAll(p); err != nil {
						errs = append(errs, err)
					}
					continue
				}
				if err := s.moveToTmp(p, "gc-"); err != nil {
					errs = append(errs, err)
					continue
				}
				moved, movedLayers = true, true
			}
			if moved {
				// The layers are gone from layers/ for good before any of
				// their files is.
				if err := syncDir(algDir); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if movedLayers {
		crashpoint.Hit("image-gc-layer-moved")
	}
	errs = append(errs, s.cleanTmp())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting unused layers and blobs in %s: %w", s.dir, err)
	}
	return nil
}

// moveToTmp renames p into a new directory of tmp/, for cleanTmp to delete.
func (s *Store) moveToTmp(p, prefix string) error {
	d, err := os.MkdirTemp(s.tmpDir(), prefix)
	if err != nil {
		return err
	}
	if err := os.Rename(p, filepath.Join(d, filepath.Base(p))); err != nil {
		os.Remove(d)
		return err
	}
	return nil
}

// cleanTmp empties tmp/, but for the staging directories of running pulls.
// Only a writer holding the lock may call it: another writer's staging would
// go with it.
func (s *Store) cleanTmp() error {
	entries, err := os.ReadDir(s.tmpDir())
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		if s.stagingInUse(e.Name()) {
			continue // a running pull's downloads (see Staging)
		}
		if err := os.RemoveAll(filepath.Join(s.tmpDir(), e.Name())); err != nil && !isNotExist(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// lock takes the store's writer lock, waiting for another process's import
// or remove to finish, and returns the function that releases it. flock
// locks belong to an open file, so two Stores (or goroutines) of one process
// exclude each other too.
func (s *Store) lock(ctx context.Context) (func(), error) {
	for delay := time.Millisecond; ; delay = min(2*delay, 100*time.Millisecond) {
		unlock, err := s.tryLock()
		if err == nil {
			return unlock, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for another import or remove in %s: %w", s.dir, ctx.Err())
		case <-time.After(delay):
		}
	}
}

// tryLock takes the writer lock if no one holds it; the error wraps
// EWOULDBLOCK if someone does.
func (s *Store) tryLock() (func(), error) {
	path := filepath.Join(s.dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening image store lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

func syncDir(dir string) error { return atomicfile.SyncDir(dir) }
