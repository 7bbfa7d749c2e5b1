package image

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "images"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

var epoch = time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)

// file, dir, symlink and whiteout make tar entries for test layers.
type entry struct {
	hdr  *tar.Header
	body string
}

func file(name, body string) entry {
	return entry{&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: epoch}, body}
}

func dir(name string) entry {
	return entry{&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: epoch}, ""}
}

func symlink(name, target string) entry {
	return entry{&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}, ""}
}

func whiteout(p string) entry { return file(path.Join(path.Dir(p), ".wh."+path.Base(p)), "") }

func opaque(d string) entry { return file(d+"/.wh..wh..opq", "") }

func tarBytes(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		if err := tw.WriteHeader(e.hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// gzLayer is a gzip-compressed layer, as registries serve them.
func gzLayer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	b := tarBytes(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// rawLayer is an uncompressed layer, as docker save writes them.
func rawLayer(t *testing.T, mt types.MediaType, entries ...entry) v1.Layer {
	t.Helper()
	return static.NewLayer(tarBytes(t, entries...), mt)
}

// newImage builds an OCI image of layers with cmd.
func newImage(t *testing.T, arch string, cmd []string, layers ...v1.Layer) v1.Image {
	t.Helper()
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", arch, v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Cmd:          cmd,
		Env:          []string{"PATH=/bin"},
		WorkingDir:   "/work",
		User:         "1000:1000",
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func configID(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func manifestDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// writeDockerArchive writes a docker-save style archive (manifest.json only)
// of the images by tag.
func writeDockerArchive(t *testing.T, images map[string]v1.Image) string {
	t.Helper()
	refs := map[name.Reference]v1.Image{}
	for tag, img := range images {
		ref, err := name.NewTag(tag)
		if err != nil {
			t.Fatal(err)
		}
		refs[ref] = img
	}
	out := filepath.Join(t.TempDir(), "docker.tar")
	if err := tarball.MultiRefWriteToFile(out, refs); err != nil {
		t.Fatal(err)
	}
	return out
}

// ociItem is one entry of an OCI archive's index.json.
type ociItem struct {
	img         v1.Image      // or
	idx         v1.ImageIndex // a multi-platform image
	annotations map[string]string
}

// writeOCILayout writes an OCI image layout of items into a new directory,
// with a docker-style manifest.json naming repoTags[i] for items[i] when
// repoTags is not nil (the combined form docker ≥ 25 writes).
func writeOCILayout(t *testing.T, items []ociItem, repoTags [][]string) string {
	t.Helper()
	d := t.TempDir()
	p, err := layout.Write(d, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	type dockerEntry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var dm []dockerEntry
	for i, it := range items {
		opts := []layout.Option{layout.WithAnnotations(it.annotations)}
		if it.img != nil {
			err = p.AppendImage(it.img, opts...)
		} else {
			err = p.AppendIndex(it.idx, opts...)
		}
		if err != nil {
			t.Fatal(err)
		}
		if repoTags != nil {
			m, err := it.img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			e := dockerEntry{Config: "blobs/sha256/" + m.Config.Digest.Hex, RepoTags: repoTags[i]}
			for _, l := range m.Layers {
				e.Layers = append(e.Layers, "blobs/sha256/"+l.Digest.Hex)
			}
			dm = append(dm, e)
		}
	}
	if repoTags != nil {
		b, err := json.Marshal(dm)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.WriteFile("manifest.json", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// tarDir writes the tree at d as a tar archive and returns its path.
func tarDir(t *testing.T, d string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "oci.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(d, func(p string, de fs.DirEntry, err error) error {
		if err != nil || p == d {
			return err
		}
		rel, _ := filepath.Rel(d, p)
		if de.IsDir() {
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: 0o755})
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel, Mode: 0o644, Size: int64(len(b))}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return out
}

func writeOCIArchive(t *testing.T, items ...ociItem) string {
	t.Helper()
	return tarDir(t, writeOCILayout(t, items, nil))
}

// platformIndex is a two-platform image index: this machine's image and
// another architecture's.
func platformIndex(t *testing.T, mine, other v1.Image) v1.ImageIndex {
	t.Helper()
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: otherArch}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
}

// tree describes every file under d: type, mode, owner and content or link
// target, by path.
func tree(t *testing.T, d string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(d, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(d, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		perm := fmt.Sprintf("%o %d:%d", st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			out[rel] = "dir " + perm
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(b) > 64 {
				b = fmt.Appendf(nil, "sha256:%x", sha256.Sum256(b))
			}
			out[rel] = "file " + perm + " " + string(b)
		case unix.S_IFLNK:
			target, _ := os.Readlink(p)
			out[rel] = "symlink " + target
		default:
			out[rel] = fmt.Sprintf("other %o rdev %d", st.Mode, st.Rdev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func compareTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if got[k] != want[k] {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], want[k])
		}
	}
}

// dirEntries lists the names in d.
func dirEntries(t *testing.T, d string) []string { return testutil.DirNames(t, d) }

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
