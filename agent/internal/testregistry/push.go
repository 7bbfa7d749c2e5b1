package testregistry

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Push pushes the image of archive (the test image, testutil.TestImage: an OCI
// archive, or a `docker save` one) to ref ("repo:tag" on this registry, or
// HOST/repo:tag) and returns its manifest digest. An OCI archive's manifest is
// pushed as it is, so the digest is the archive's own.
func (r *Registry) Push(t testing.TB, archive, ref string) v1.Hash {
	t.Helper()
	return r.PushImage(t, LoadImage(t, archive), ref)
}

// PushImage pushes img to ref and returns its manifest digest.
func (r *Registry) PushImage(t testing.TB, img v1.Image, ref string) v1.Hash {
	t.Helper()
	parsed := r.parseRef(t, ref)
	if err := remote.Write(parsed, img, r.RemoteOptions()...); err != nil {
		t.Fatalf("Could not push %s to the test registry: %v", parsed, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PlatformImage is one entry of an index: an image and the platform it is for.
type PlatformImage struct {
	Platform v1.Platform
	Image    v1.Image
}

// PushIndex pushes to ref a multi-platform OCI index of the image of archive, for
// its own platform (linux/amd64 on an amd64 machine), and a small FakeImage for
// another (linux/arm64, or linux/amd64 when the test image is arm64). It returns
// the index's digest.
func (r *Registry) PushIndex(t testing.TB, archive, ref string) v1.Hash {
	t.Helper()
	img := LoadImage(t, archive)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("Test image %s: %v", archive, err)
	}
	own := v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant}
	other := v1.Platform{OS: "linux", Architecture: "arm64"}
	if own.Architecture == "arm64" {
		other.Architecture = "amd64"
	}
	return r.PushIndexOf(t, ref,
		PlatformImage{Platform: own, Image: img},
		PlatformImage{Platform: other, Image: FakeImage(t, other)},
	)
}

// PushIndexOf pushes an OCI index of entries, in this order, to ref and returns its digest.
func (r *Registry) PushIndexOf(t testing.TB, ref string, entries ...PlatformImage) v1.Hash {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, e := range entries {
		p := e.Platform
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        e.Image,
			Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	parsed := r.parseRef(t, ref)
	if err := remote.WriteIndex(parsed, idx, r.RemoteOptions()...); err != nil {
		t.Fatalf("Could not push the index %s to the test registry: %v", parsed, err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// FakeImage is a small OCI image for platform with one layer of random bytes (a
// different image on each call); it cannot run, it only fills an index.
func FakeImage(t testing.TB, platform v1.Platform) v1.Image {
	t.Helper()
	layer, err := random.Layer(1024, types.OCILayer)
	if err != nil {
		t.Fatal(err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.ConfigFile(base, &v1.ConfigFile{
		OS:           platform.OS,
		Architecture: platform.Architecture,
		Variant:      platform.Variant,
		Config:       v1.Config{Cmd: []string{"/fake"}},
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.AppendLayers(img, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// WithLabel is img with the config label key=value: the same layers under a new
// digest, e.g. to move a tag to a new image.
func WithLabel(t testing.TB, img v1.Image, key, value string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := *cf.Config.DeepCopy()
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels[key] = value
	out, err := mutate.Config(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// LoadImage reads the image of archive: the only image of an OCI archive (a tar
// of an OCI image layout, as hack/build-test-image.sh writes), or the first of a
// `docker save` archive.
func LoadImage(t testing.TB, archive string) v1.Image {
	t.Helper()
	img, err := loadImage(archive, t.TempDir())
	if err != nil {
		t.Fatalf("Could not read the test image %s: %v", archive, err)
	}
	return img
}

// loadImage extracts archive into dir and reads its image from there. A layout
// image reads its blobs lazily, so dir must outlive the image's use.
func loadImage(archive, dir string) (v1.Image, error) {
	if err := untar(archive, dir); err != nil {
		// An older `docker save` archive has symlinks; tarball reads it in place.
		if img, terr := tarball.ImageFromPath(archive, nil); terr == nil {
			return img, nil
		}
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); errors.Is(err, fs.ErrNotExist) {
		return tarball.ImageFromPath(archive, nil) // a docker archive
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var images []v1.Hash
	for _, d := range im.Manifests {
		if d.MediaType.IsImage() {
			images = append(images, d.Digest)
		}
	}
	if len(images) != 1 {
		return nil, fmt.Errorf("index.json lists %d images, want 1", len(images))
	}
	return p.Image(images[0])
}

// untar extracts the regular files and directories of archive into dir.
func untar(archive, dir string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if !filepath.IsLocal(hdr.Name) {
			return fmt.Errorf("entry %q is not a local path", hdr.Name)
		}
		p := filepath.Join(dir, hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return err
			}
			out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			_, err = io.Copy(out, tr)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: unexpected type %q", hdr.Name, hdr.Typeflag)
		}
	}
}
