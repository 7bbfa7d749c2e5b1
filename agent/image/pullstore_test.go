package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// A running pull's staging survives the cleanups of tmp/ that imports,
// removes and Open do; a closed one, or one whose process died (its lock
// gone), does not.
func TestStagingAndCleanup(t *testing.T) {
	s := openStore(t)
	st, err := s.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	blob := filepath.Join(st.Dir, "blob.partial")
	if err := os.WriteFile(blob, []byte("half a layer"), 0o600); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(s.tmpDir(), "import-stray")
	if err := os.Mkdir(stray, 0o700); err != nil {
		t.Fatal(err)
	}

	// What every writer does first, and what Open does.
	unlock, err := s.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = s.cleanTmp()
	unlock()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(blob); err != nil {
		t.Errorf("a running pull's download went with the cleanup: %v", err)
	}
	if _, err := os.Stat(stray); err == nil {
		t.Error("the cleanup left what an interrupted import left")
	}

	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(st.Dir); err == nil {
		t.Error("Close left the staging directory")
	}

	// A pull killed with its process: the directory stays, unlocked; the
	// next Open removes it.
	dead := filepath.Join(s.tmpDir(), stagingPrefix+"12345")
	if err := os.Mkdir(dead, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dead, "x.partial"), []byte("x"), 0o600)
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); err == nil {
		t.Error("Open left a dead pull's staging directory")
	}
}

// A lock taken through another open file (as another process would hold
// it) keeps the staging directory.
func TestStagingLockedElsewhere(t *testing.T) {
	s := openStore(t)
	d := filepath.Join(s.tmpDir(), stagingPrefix+"other")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(d); err != nil {
		t.Errorf("the cleanup removed a locked staging directory: %v", err)
	}
}

func TestHasLayer(t *testing.T) {
	s := openStore(t)
	h := v1.Hash{Algorithm: "sha256", Hex: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	if s.HasLayer(h) {
		t.Fatal("HasLayer of an empty store")
	}
	if err := os.MkdirAll(s.layerPath(h), 0o755); err != nil {
		t.Fatal(err)
	}
	if !s.HasLayer(h) {
		t.Error("HasLayer misses a layer directory")
	}
	if s.HasLayer(v1.Hash{Algorithm: "sha256", Hex: "../../x"}) {
		t.Error("HasLayer of a bad hash")
	}
}

func TestCheckDownload(t *testing.T) {
	s := openStore(t)
	s.SetLimits(Limits{MaxImageSize: 1 << 20})
	// 100 GiB, 2 GiB free: the reserve is 1 GiB.
	s.statfs = func(_ string, st *unix.Statfs_t) error {
		*st = unix.Statfs_t{Bsize: 4096, Blocks: 100 << 30 / 4096, Bavail: 2 << 30 / 4096, Files: 1000, Ffree: 1000}
		return nil
	}
	if err := s.CheckDownload("x", 512<<10); err != nil {
		t.Errorf("half a MiB: %v", err)
	}
	if err := s.CheckDownload("x", 2<<20); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "image-max-size") {
		t.Errorf("over image-max-size: %v", err)
	}
	s.SetLimits(Limits{})
	if err := s.CheckDownload("x", 1536<<20); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "reserve") {
		t.Errorf("into the reserve: %v", err)
	}
}
