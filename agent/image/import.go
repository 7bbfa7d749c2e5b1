package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/image/layerfs"
	"github.com/agentd-project/agentd/agent/internal/atomicfile"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
)

// Import loads every image of an archive: an OCI image archive (a tar of an
// OCI image layout: oci-layout, index.json, blobs/) or a `docker save`
// archive (manifest.json with RepoTags; also the combined form that has
// both, which is what docker ≥ 25 and hack/build-test-image.sh write). The
// archive may be gzip-compressed. Returns the images imported, in archive
// order.
//
// Names come from RepoTags, or the index annotations
// org.opencontainers.image.ref.name / io.containerd.image.name (a ref.name
// that is only a tag, as docker ≥ 25 writes, tags the repository of
// io.containerd.image.name). An index entry that is itself an index (a
// multi-platform image) contributes its linux/GOARCH image.
//
// Every manifest, config and layer is checked against its digest (layers
// also against their diff ID); a mismatch fails the import with an error
// wrapping ErrDigestMismatch and leaves the store as it was. Every entry is
// charged to the store's Limits before it is written, and the free space of
// the store's filesystem is watched while it is: an image that would go over
// a limit, or leave the filesystem below its reserve, fails the import at
// once with a *LimitError (errors.Is ErrTooLarge) and leaves the store as it
// was too. Re-importing an image the store has is a no-op; importing a new
// image under an existing name moves the name. Import holds the store's lock
// throughout, so concurrent imports run one after the other; ctx cancels the
// wait for the lock and the import.
func (s *Store) Import(ctx context.Context, archive string) (_ []Image, err error) {
	limits := s.Limits()
	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.cleanTmp(); err != nil {
		return nil, fmt.Errorf("cleaning %s: %w", s.tmpDir(), err)
	}
	idx, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			// Drop layers and blobs this import wrote: the index on disk
			// does not refer to them.
			if old, lerr := s.loadIndex(); lerr == nil {
				s.collect(old)
			}
		}
	}()

	work, err := os.MkdirTemp(s.tmpDir(), "import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	// The blobs of an OCI archive are copied into work first, compressed
	// (or not) as they are: they may take image-max-size in all, and not
	// the filesystem's reserve.
	blobs := newMeter(&budget{limits: Limits{MaxImageSize: limits.MaxImageSize}}, s.tmpDir(), s.statfs)
	cands, err := readArchive(ctx, archive, work, blobs)
	if err != nil {
		if le := s.limitError(err, archive, nil); le != nil {
			return nil, le
		}
		return nil, fmt.Errorf("reading image archive %s: %w", archive, err)
	}
	b := &budget{limits: limits}
	if limits.MaxStoreSize > 0 {
		if b.store, err = s.storeSize(idx); err != nil {
			return nil, err
		}
		b.storeBefore = b.store
	}
	m := newMeter(b, s.tmpDir(), s.statfs)
	var ids []string
	changed := false
	for _, c := range cands {
		id, ch, err := s.importImage(ctx, idx, c, m)
		if err != nil {
			if le := s.limitError(err, archive, c); le != nil {
				return nil, le
			}
			return nil, fmt.Errorf("importing %s from %s: %w", c.what, archive, err)
		}
		changed = changed || ch
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	if changed {
		// The commit: until the new index replaces the old one, nothing of
		// this import is an image, and what it put in place is collected
		// (below on error; by the next Open after a crash).
		if err := s.saveIndex(idx); err != nil {
			return nil, fmt.Errorf("writing image store index: %w", err)
		}
		crashpoint.Hit("image-index-written")
	}

	names := idx.namesByID()
	out := make([]Image, 0, len(ids))
	for _, id := range ids {
		img, err := s.image(idx, id, names[id])
		if err != nil {
			return nil, err
		}
		out = append(out, *img)
	}
	return out, nil
}

// limitError returns err's *LimitError, completed with the image c (nil:
// the archive as a whole) and archive, or nil if err is not one.
func (s *Store) limitError(err error, archive string, c *candidate) *LimitError {
	var le *LimitError
	if !errors.As(err, &le) {
		return nil
	}
	le.Archive, le.Dir = archive, s.dir
	if c != nil {
		le.Image = c.what
		if len(c.names) > 0 {
			le.Image = strings.Join(c.names, ", ")
		}
	}
	return le
}

// storeSize is the unpacked size of every layer in the store.
func (s *Store) storeSize(idx *index) (int64, error) {
	var total int64
	algs, err := os.ReadDir(filepath.Join(s.dir, "layers"))
	if err != nil {
		return 0, err
	}
	for _, alg := range algs {
		layers, err := os.ReadDir(filepath.Join(s.dir, "layers", alg.Name()))
		if err != nil {
			return 0, err
		}
		for _, l := range layers {
			n, err := s.layerSize(idx, v1.Hash{Algorithm: alg.Name(), Hex: l.Name()})
			if err != nil {
				return 0, err
			}
			total += n
		}
	}
	return total, nil
}

// layerSize is the unpacked size of a layer in the store: recorded in idx,
// or measured (and then recorded in idx).
func (s *Store) layerSize(idx *index, diffID v1.Hash) (int64, error) {
	if n, ok := idx.LayerSizes[diffID.String()]; ok {
		return n, nil
	}
	n, err := measureLayer(s.layerPath(diffID))
	if err != nil {
		return 0, err
	}
	idx.LayerSizes[diffID.String()] = n
	return n, nil
}

// candidate is one image found in an archive.
type candidate struct {
	what  string   // for errors: which image of the archive
	img   v1.Image // from the OCI layout, or from manifest.json (docker)
	names []string // normalised
	// want is the manifest digest the OCI index gives (nil for docker).
	want *v1.Hash
	// parallel is how many of its layers may be unpacked at once (0: 1).
	parallel int
	// blobsVerified: its layers' Compressed readers check the blobs
	// themselves (ImportOptions.BlobsVerified).
	blobsVerified bool
	// docker is set for images from manifest.json only: they have no
	// manifest yet, and configHex is the digest their config's file name
	// gives ("" if none).
	docker    bool
	configHex string
}

// layoutEntry matches the archive entries an OCI image layout needs.
var layoutEntry = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(oci-layout|index\.json|blobs/[a-z0-9]+/[0-9a-f]{32,128})$`)
})

// readArchive finds the images of archive, extracting the OCI layout part
// (if any) into work, metered by m.
func readArchive(ctx context.Context, archive string, work string, m *meter) ([]*candidate, error) {
	open, err := archiveOpener(archive)
	if err != nil {
		return nil, err
	}
	hasIndex, hasManifest, err := extractLayout(ctx, open, work, m)
	if err != nil {
		return nil, err
	}
	if !hasIndex && !hasManifest {
		return nil, errors.New("neither an OCI image archive (no index.json) nor a docker save archive (no manifest.json)")
	}

	var cands []*candidate
	byConfig := map[string]*candidate{}
	if hasIndex {
		if cands, err = ociCandidates(work); err != nil {
			return nil, err
		}
		for _, c := range cands {
			m, err := c.img.Manifest()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", c.what, err)
			}
			byConfig[m.Config.Digest.Hex] = c
		}
	}
	if hasManifest {
		more, err := dockerCandidates(open, byConfig)
		if err != nil {
			return nil, err
		}
		cands = append(cands, more...)
	}
	if len(cands) == 0 {
		return nil, errors.New("the archive holds no image")
	}
	for _, c := range cands {
		sort.Strings(c.names)
		c.names = slices.Compact(c.names)
	}
	return cands, nil
}

// archiveOpener returns a function that opens the archive's tar stream,
// decompressing it if it is gzipped.
func archiveOpener(archive string) (tarball.Opener, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	magic := make([]byte, 2)
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	gzipped := bytes.Equal(magic, []byte{0x1f, 0x8b})
	return func() (io.ReadCloser, error) {
		f, err := os.Open(archive)
		if err != nil || !gzipped {
			return f, err
		}
		zr, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			f.Close()
			return nil, err
		}
		return readCloser{zr, f.Close}, nil
	}, nil
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }

// extractLayout copies the OCI layout entries of the archive (oci-layout,
// index.json, blobs/) into work, charging each to m. It creates only regular
// files under names it checked, so the archive cannot make it write anywhere
// else.
func extractLayout(ctx context.Context, open tarball.Opener, work string, m *meter) (hasIndex, hasManifest bool, err error) {
	rc, err := open()
	if err != nil {
		return false, false, err
	}
	defer rc.Close()
	tr := tar.NewReader(ctxReader{ctx, rc})
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hasIndex, hasManifest, nil
		}
		if err != nil {
			return false, false, fmt.Errorf("not a tar archive: %w", err)
		}
		n := path.Clean(hdr.Name)
		if n == "manifest.json" {
			hasManifest = true
		}
		if !layoutEntry().MatchString(n) || hdr.Typeflag == tar.TypeDir {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return false, false, fmt.Errorf("archive entry %s is not a regular file (tar type %q)", hdr.Name, hdr.Typeflag)
		}
		hasIndex = hasIndex || n == "index.json"
		if err := m.Entry(hdr.Name, hdr.Size); err != nil {
			return false, false, err
		}
		dst := filepath.Join(work, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return false, false, err
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return false, false, err
		}
		err = m.copy(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return false, false, fmt.Errorf("extracting %s: %w", hdr.Name, err)
		}
	}
}

// ociCandidates lists the images of the OCI layout in dir.
func ociCandidates(dir string) ([]*candidate, error) {
	ii, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	var cands []*candidate
	for i, desc := range im.Manifests {
		what := fmt.Sprintf("index.json entry %d (%s)", i, desc.Digest)
		names, err := annotationNames(desc.Annotations)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		want := desc.Digest
		var img v1.Image
		switch {
		case desc.MediaType.IsImage():
			img, err = ii.Image(desc.Digest)
		case desc.MediaType.IsIndex():
			img, want, err = platformImage(ii, desc)
		default:
			continue // an artifact, not an image
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		cands = append(cands, &candidate{what: what, img: img, names: names, want: &want})
	}
	return cands, nil
}

// platformImage picks the image for this machine from the nested index desc
// names, and returns it with its manifest digest.
func platformImage(parent v1.ImageIndex, desc v1.Descriptor) (v1.Image, v1.Hash, error) {
	ii, err := parent.ImageIndex(desc.Digest)
	if err != nil {
		return nil, v1.Hash{}, err
	}
	if got, err := ii.Digest(); err != nil {
		return nil, v1.Hash{}, err
	} else if got != desc.Digest {
		return nil, v1.Hash{}, mismatch("image index", desc.Digest, got)
	}
	im, err := ii.IndexManifest()
	if err != nil {
		return nil, v1.Hash{}, err
	}
	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	var have []string
	for _, m := range im.Manifests {
		if !m.MediaType.IsImage() || m.Platform == nil {
			continue
		}
		if m.Platform.Satisfies(want) {
			img, err := ii.Image(m.Digest)
			return img, m.Digest, err
		}
		have = append(have, m.Platform.String())
	}
	return nil, v1.Hash{}, fmt.Errorf("the index has no %s image (it has: %v)", want.String(), have)
}

// configFile matches the config entry of a manifest.json: blobs/sha256/<hex>
// (docker ≥ 25), <hex>.json (older docker), sha256:<hex> (go-containerregistry).
var configFile = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`(?:^|/|sha256:)([0-9a-f]{64})(?:\.json)?$`) })

// dockerCandidates lists the images of manifest.json that are not already
// in byConfig (the OCI index's images by config digest), and adds their
// RepoTags to those that are.
func dockerCandidates(open tarball.Opener, byConfig map[string]*candidate) ([]*candidate, error) {
	m, err := tarball.LoadManifest(open)
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var cands []*candidate
	for i, d := range m {
		what := fmt.Sprintf("manifest.json entry %d (%s)", i, d.Config)
		var names []string
		for _, t := range d.RepoTags {
			n, err := NormalizeName(t)
			if err != nil {
				return nil, fmt.Errorf("%s: RepoTags: %w", what, err)
			}
			names = append(names, n)
		}
		var hex string
		if sm := configFile().FindStringSubmatch(d.Config); sm != nil {
			hex = sm[1]
		}
		if c := byConfig[hex]; hex != "" && c != nil {
			c.names = append(c.names, names...)
			continue
		}
		var tag *name.Tag
		if len(d.RepoTags) > 0 {
			t, err := name.NewTag(d.RepoTags[0], name.WeakValidation)
			if err != nil {
				return nil, fmt.Errorf("%s: RepoTags: %w", what, err)
			}
			tag = &t
		} else if len(m) > 1 {
			return nil, fmt.Errorf("%s has no RepoTags and the archive has %d images: save the images with names, or as an OCI archive", what, len(m))
		}
		img, err := tarball.Image(open, tag)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		cands = append(cands, &candidate{what: what, img: img, names: names, docker: true, configHex: hex})
		if hex != "" {
			byConfig[hex] = cands[len(cands)-1]
		}
	}
	return cands, nil
}

// importImage adds c to the store and to idx, unpacking the layers the store
// does not have yet, metered by mt. It reports the image's ID and whether idx
// changed.
func (s *Store) importImage(ctx context.Context, idx *index, c *candidate, mt *meter) (string, bool, error) {
	img := c.img
	rawCfg, err := img.RawConfigFile()
	if err != nil {
		return "", false, fmt.Errorf("reading config: %w", err)
	}
	id, _, err := v1.SHA256(bytes.NewReader(rawCfg))
	if err != nil {
		return "", false, err
	}
	if c.want != nil {
		digest, err := img.Digest()
		if err != nil {
			return "", false, fmt.Errorf("reading manifest: %w", err)
		}
		if digest != *c.want {
			return "", false, mismatch("manifest", *c.want, digest)
		}
		m, err := img.Manifest()
		if err != nil {
			return "", false, fmt.Errorf("reading manifest: %w", err)
		}
		if m.Config.Digest != id {
			return "", false, mismatch("config", m.Config.Digest, id)
		}
	} else if c.configHex != "" && c.configHex != id.Hex {
		return "", false, mismatch("config", v1.Hash{Algorithm: "sha256", Hex: c.configHex}, id)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(rawCfg))
	if err != nil {
		return "", false, fmt.Errorf("parsing config %s: %w", id, err)
	}

	if rec := idx.Images[id.String()]; rec != nil && s.complete(id, rec) {
		return id.String(), setNames(idx, id.String(), c.names), nil
	}

	if c.docker {
		if img, err = newDockerImage(ctx, img, cf.RootFS.DiffIDs, mt.b.limits.MaxImageSize); err != nil {
			return "", false, err
		}
	}
	m, err := img.Manifest()
	if err != nil {
		return "", false, fmt.Errorf("reading manifest: %w", err)
	}
	rawManifest, err := img.RawManifest()
	if err != nil {
		return "", false, err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", false, err
	}
	if len(m.Layers) != len(cf.RootFS.DiffIDs) {
		return "", false, fmt.Errorf("manifest %s lists %d layers but config %s has %d diff IDs", digest, len(m.Layers), id, len(cf.RootFS.DiffIDs))
	}

	// The image's budget starts with the layers the store has already.
	b := mt.b
	b.image = 0
	for i, diffID := range cf.RootFS.DiffIDs {
		if b.limits.MaxImageSize == 0 || slices.Contains(cf.RootFS.DiffIDs[:i], diffID) {
			continue
		}
		if _, err := os.Stat(s.layerPath(diffID)); err != nil {
			continue
		}
		n, err := s.layerSize(idx, diffID)
		if err == nil {
			err = b.chargeImage(n)
		}
		if err != nil {
			return "", false, fmt.Errorf("layer %d of %d (%s), in the store already: %w", i+1, len(m.Layers), diffID, err)
		}
	}

	rec := &record{Digest: digest.String()}
	// The layers to unpack: those the store lacks, each once.
	type job struct {
		i      int
		desc   v1.Descriptor
		diffID v1.Hash
		dst    string
		tmp    string // the unpacked copy in tmp/
		size   int64  // its unpacked size
		err    error
	}
	var jobs []*job
	queued := map[string]bool{}
	for i, desc := range m.Layers {
		diffID := cf.RootFS.DiffIDs[i]
		rec.Size += desc.Size
		rec.Layers = append(rec.Layers, diffID.String())
		dst := s.layerPath(diffID)
		if _, err := os.Stat(dst); err == nil || queued[dst] {
			continue
		}
		queued[dst] = true
		jobs = append(jobs, &job{i: i, desc: desc, diffID: diffID, dst: dst})
	}
	// Up to c.parallel layers are unpacked at once, each with its own meter
	// on the image's one budget; they are read in manifest order.
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, max(c.parallel, 1))
	var wg sync.WaitGroup
	for _, j := range jobs {
		select {
		case sem <- struct{}{}:
		case <-jctx.Done():
		}
		if jctx.Err() != nil {
			j.err = jctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			jm := mt.fork(cap(sem))
			l, err := img.LayerByDigest(j.desc.Digest)
			if err == nil {
				j.tmp, err = s.unpackLayer(jctx, l, j.desc, j.diffID, jm, c.blobsVerified)
				j.size = jm.layer
			}
			if err == nil {
				crashpoint.Hit("image-layer-unpacked")
			}
			if j.err = err; err != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// The error of the first layer that failed on its own, not because
	// another's failure cancelled it.
	var failed *job
	for _, j := range jobs {
		if j.err != nil && (failed == nil || errors.Is(failed.err, context.Canceled) && !errors.Is(j.err, context.Canceled)) {
			failed = j
		}
	}
	if failed != nil {
		err := failed.err
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			err = ctx.Err()
		}
		var le *LimitError
		if errors.As(err, &le) {
			le.Layer = fmt.Sprintf("layer %d of %d, %s", failed.i+1, len(m.Layers), failed.desc.Digest)
			return "", false, le
		}
		return "", false, fmt.Errorf("layer %d of %d (%s): %w", failed.i+1, len(m.Layers), failed.desc.Digest, err)
	}
	staged := map[string]string{} // layer directory → its unpacked copy in tmp/
	sizes := map[v1.Hash]int64{}  // unpacked size of each staged layer
	for _, j := range jobs {
		staged[j.dst] = j.tmp
		sizes[j.diffID] = j.size
	}
	if len(staged) > 0 {
		// One syncfs for all the layers, so that a layer that is in place
		// after a crash is whole (instead of an fsync per file).
		if err := syncFS(s.tmpDir()); err != nil {
			return "", false, err
		}
		parents := map[string]bool{}
		for dst, tmp := range staged {
			parents[filepath.Dir(dst)] = true
			if err := ensureDir(filepath.Dir(dst), storeDirMode); err != nil {
				return "", false, err
			}
			if err := os.Rename(tmp, dst); err != nil {
				return "", false, err
			}
			crashpoint.Hit("image-layer-committed")
		}
		for diffID, n := range sizes {
			idx.LayerSizes[diffID.String()] = n
		}
		for p := range parents {
			if err := syncDir(p); err != nil {
				return "", false, err
			}
		}
	}
	if err := s.writeBlob(id, rawCfg); err != nil {
		return "", false, err
	}
	if err := s.writeBlob(digest, rawManifest); err != nil {
		return "", false, err
	}
	crashpoint.Hit("image-blobs-written")
	idx.Images[id.String()] = rec
	setNames(idx, id.String(), c.names)
	return id.String(), true, nil
}

// complete reports whether everything the image rec needs is on disk.
func (s *Store) complete(id v1.Hash, rec *record) bool {
	paths := []string{s.blobPath(id)}
	if h, err := v1.NewHash(rec.Digest); err == nil {
		paths = append(paths, s.blobPath(h))
	} else {
		return false
	}
	for _, l := range rec.Layers {
		h, err := v1.NewHash(l)
		if err != nil {
			return false
		}
		paths = append(paths, s.layerPath(h))
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	return true
}

// setNames points names at id and reports whether any of them moved.
func setNames(idx *index, id string, names []string) bool {
	changed := false
	for _, n := range names {
		if idx.Names[n] != id {
			idx.Names[n] = id
			changed = true
		}
	}
	return changed
}

func (s *Store) writeBlob(h v1.Hash, data []byte) error {
	p := s.blobPath(h)
	if fi, err := os.Stat(p); err == nil && fi.Size() == int64(len(data)) {
		return nil
	}
	if err := ensureDir(filepath.Dir(p), storeDirMode); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, data, 0o600)
}

// unpackLayer unpacks l into a new directory in tmp/, which it returns,
// checking the blob against desc (its size only when verified: l's reader
// checks the digest, see ImportOptions.BlobsVerified) and the tar stream
// against diffID, and charging it to m (m.layer is then its unpacked size).
// The caller renames the directory into layers/. On error, nothing of it is
// left.
func (s *Store) unpackLayer(ctx context.Context, l v1.Layer, desc v1.Descriptor, diffID v1.Hash, m *meter, verified bool) (_ string, err error) {
	m.startLayer()
	tmp, err := os.MkdirTemp(s.tmpDir(), "layer-")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(tmp); rerr != nil {
				err = fmt.Errorf("%w (and removing the partly unpacked layer failed: %v)", err, rerr)
			}
		}
	}()
	// The layer's root is the container's "/" under overlayfs: 0755, as
	// MkdirTemp's 0700 is not, and the layer's "./" entry cannot change.
	if err := os.Chmod(tmp, layerDirMode); err != nil {
		return "", err
	}

	var blob *digestReader
	var stream io.Reader
	if isUncompressed(desc.MediaType) {
		rc, err := l.Uncompressed()
		if err != nil {
			return "", err
		}
		defer rc.Close()
		blob = newDigestReader(ctxReader{ctx, rc}, "layer blob", desc.Digest, desc.Size)
		if verified {
			blob.h = nil // its reader checks the digest
		}
		stream = blob
	} else {
		rc, err := l.Compressed()
		if err != nil {
			return "", err
		}
		defer rc.Close()
		blob = newDigestReader(ctxReader{ctx, rc}, "layer blob", desc.Digest, desc.Size)
		if verified {
			blob.h = nil // its reader checks the digest
		}
		// Decompressed (gzip or zstd, found by magic) from the checked
		// stream.
		urc, err := decompress(blob)
		if err != nil {
			return "", fmt.Errorf("decompressing: %w", err)
		}
		defer urc.Close()
		stream = urc
	}
	diff := newDigestReader(stream, "uncompressed layer (diff ID)", diffID, -1)

	// A corrupt blob usually breaks the tar or the decompression (its
	// checksum) first; say that it is corrupt rather than how it broke. The
	// blob's reader may fail with ErrDigestMismatch itself (a registry
	// pull's, which checks the blob as it downloads).
	corrupt := func(err error) error {
		if errors.Is(err, ErrTooLarge) || ctx.Err() != nil {
			return err
		}
		_, cerr := io.Copy(io.Discard, blob)
		if blob.err != nil {
			return fmt.Errorf("%w (unpacking failed: %v)", blob.err, err)
		}
		if errors.Is(cerr, ErrDigestMismatch) {
			return fmt.Errorf("%w (unpacking failed: %v)", cerr, err)
		}
		return err
	}
	if err := layerfs.Unpack(diff, tmp, m); err != nil {
		if cerr := corrupt(err); cerr != err || errors.Is(err, ErrTooLarge) {
			return "", cerr
		}
		return "", fmt.Errorf("unpacking: %w", err)
	}
	// Read both streams to their ends: that is where the digests are
	// checked. What follows the tar archive is charged too, or a few bytes
	// of gzip could make the store read without end.
	if err := m.discard(diff); err != nil {
		return "", corrupt(err)
	}
	if _, err := io.Copy(io.Discard, blob); err != nil {
		return "", err
	}
	if err := blob.verified(); err != nil {
		return "", err
	}
	if err := diff.verified(); err != nil {
		return "", err
	}

	return tmp, nil
}

func isUncompressed(mt types.MediaType) bool {
	switch mt {
	case types.OCIUncompressedLayer, types.OCIUncompressedRestrictedLayer, types.DockerUncompressedLayer:
		return true
	}
	return false
}

// syncFS flushes the filesystem that holds dir.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

func mismatch(what string, want, got v1.Hash) error {
	return fmt.Errorf("%w: %s %s has digest %s (the archive is corrupt or was modified)", ErrDigestMismatch, what, want, got)
}

// digestReader passes a stream through while hashing it, and fails at EOF
// (or once it is longer than its size) if it is not the content want names.
// With h nil it checks the size only (the stream checks its digest itself).
type digestReader struct {
	r    io.Reader
	what string
	want v1.Hash
	size int64 // -1: unknown
	h    hash.Hash
	n    int64
	done bool  // EOF reached and checked
	err  error // the mismatch, once found
}

func newDigestReader(r io.Reader, what string, want v1.Hash, size int64) *digestReader {
	h, err := v1.Hasher(want.Algorithm) // an unsupported algorithm fails the first Read
	return &digestReader{r: r, what: what, want: want, size: size, h: h, err: err}
}

func (d *digestReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n, err := d.r.Read(p)
	if d.h != nil {
		d.h.Write(p[:n])
	}
	d.n += int64(n)
	if d.size >= 0 && d.n > d.size {
		d.err = fmt.Errorf("%w: %s %s is longer than the %d bytes its descriptor gives (the archive is corrupt or was modified)", ErrDigestMismatch, d.what, d.want, d.size)
		return n, d.err
	}
	if errors.Is(err, io.EOF) {
		var got v1.Hash
		if d.h != nil {
			got = v1.Hash{Algorithm: d.want.Algorithm, Hex: fmt.Sprintf("%x", d.h.Sum(nil))}
		}
		switch {
		case d.size >= 0 && d.n != d.size:
			d.err = fmt.Errorf("%w: %s %s has %d bytes, want %d (the archive is corrupt or was modified)", ErrDigestMismatch, d.what, d.want, d.n, d.size)
		case d.h != nil && got != d.want:
			d.err = mismatch(d.what, d.want, got)
		default:
			d.done = true
		}
		if d.err != nil {
			return n, d.err
		}
	}
	return n, err
}

// verified is nil once the whole stream was read and matched.
func (d *digestReader) verified() error {
	if d.err != nil {
		return d.err
	}
	if !d.done {
		return fmt.Errorf("%s %s was not read to its end", d.what, d.want)
	}
	return nil
}

// ctxReader stops a copy once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// dockerImage presents an image of a `docker save` archive (which has no
// manifest) with its layers as uncompressed blobs, as docker ≥ 25 lists them
// in its OCI index: the library then makes its manifest without compressing
// every layer to learn a digest nobody has.
type dockerImage struct {
	src    v1.Image
	layers map[v1.Hash]*dockerLayer
}

var _ partial.UncompressedImageCore = (*dockerImage)(nil)

type dockerLayer struct {
	v1.Layer
	desc v1.Descriptor
}

// Descriptor is what the library puts in the manifest for this layer.
func (l *dockerLayer) Descriptor() (*v1.Descriptor, error) { return &l.desc, nil }

func (i *dockerImage) RawConfigFile() ([]byte, error) { return i.src.RawConfigFile() }

func (i *dockerImage) MediaType() (types.MediaType, error) { return types.DockerManifestSchema2, nil }

func (i *dockerImage) LayerByDiffID(h v1.Hash) (partial.UncompressedLayer, error) {
	if l := i.layers[h]; l != nil {
		return l, nil
	}
	return nil, fmt.Errorf("no layer with diff ID %s", h)
}

// newDockerImage reads each layer of src once to learn its size (checking
// its diff ID on the way). An image of maxSize bytes unpacked (0: no limit)
// cannot have layer streams of twice that: tar headers and padding make a
// stream longer than its files, never that much. So the read stops there,
// and a few bytes of gzip cannot make it read without end.
func newDockerImage(ctx context.Context, src v1.Image, diffIDs []v1.Hash, maxSize int64) (v1.Image, error) {
	di := &dockerImage{src: src, layers: map[v1.Hash]*dockerLayer{}}
	maxStream := maxSize
	if maxStream < (1<<63-1)/2 {
		maxStream *= 2
	}
	var total int64
	for i, d := range diffIDs {
		if di.layers[d] != nil {
			continue
		}
		l, err := src.LayerByDiffID(d)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, d, err)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, d, err)
		}
		var r io.Reader = ctxReader{ctx, rc}
		if maxStream > 0 {
			r = io.LimitReader(r, maxStream-total+1)
		}
		got, n, err := v1.SHA256(r)
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i+1, d, err)
		}
		if total += n; maxStream > 0 && total > maxStream {
			return nil, &LimitError{Setting: "image-max-size", Limit: maxSize, Layer: fmt.Sprintf("layer %d of %d, %s", i+1, len(diffIDs), d)}
		}
		if got != d {
			return nil, mismatch("layer (diff ID)", d, got)
		}
		di.layers[d] = &dockerLayer{Layer: l, desc: v1.Descriptor{MediaType: types.DockerUncompressedLayer, Size: n, Digest: d}}
	}
	return partial.UncompressedToImage(di)
}
