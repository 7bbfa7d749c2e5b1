package e2e

import (
	"archive/tar"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/agentd-project/agentd/agent/internal/testutil"
)

// buildDerivedImage writes a docker-save archive of the test image with one more
// layer holding files (path → content, or "symlink:TARGET") and their parent
// directories, with USER set to user, named ref, and returns its path.
func buildDerivedImage(t *testing.T, a *agent, ref, user string, files map[string]string) string {
	t.Helper()
	base, err := tarball.ImageFromPath(testutil.TestImage(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]bool{}
	for n := range files {
		for d := filepath.Dir(n); d != "."; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	var entries []imgEntry
	for d := range dirs {
		entries = append(entries, imgEntry{hdr: &tar.Header{Name: d + "/", Typeflag: tar.TypeDir, Mode: 0o755}})
	}
	for n, content := range files {
		if target, ok := strings.CutPrefix(content, "symlink:"); ok {
			entries = append(entries, imgEntry{hdr: &tar.Header{Name: n, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}})
		} else {
			entries = append(entries, imgEntry{hdr: &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(content))}, body: content})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].hdr.Name < entries[j].hdr.Name })
	img := imgAppend(t, base, imgLayer(t, entries...))
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config.DeepCopy()
	cfg.User = user
	if img, err = mutate.Config(img, *cfg); err != nil {
		t.Fatal(err)
	}
	return imgDockerArchive(t, a.dir, ref, img)
}
