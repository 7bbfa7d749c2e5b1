package main

import (
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Every copy the pull latency measurement pushes must have layers nobody
// else has (or agentd would find them in its store and not pull), and keep
// the config's settings.
func TestPullRegistryCopiesHaveLayersOfTheirOwn(t *testing.T) {
	rnd, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := rnd.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Config.Env = []string{"PATH=/bin"}
	base, err := mutate.ConfigFile(rnd, cf)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "image.tar")
	tag, _ := name.NewTag("localhost/busybox:latest")
	if err := tarball.WriteToFile(archive, tag, base); err != nil {
		t.Fatal(err)
	}
	reg, err := startPullRegistry(archive, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.close()
	if reg.size <= 0 {
		t.Errorf("size %d", reg.size)
	}
	seen := map[v1.Hash]string{}
	baseIDs, _ := base.ConfigFile()
	for _, d := range baseIDs.RootFS.DiffIDs {
		seen[d] = "the base image"
	}
	for i := range 2 {
		img, err := crane.Pull(reg.ref(i), crane.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		got, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if len(got.RootFS.DiffIDs) != 2 {
			t.Fatalf("copy %d has %d layers, want 2", i, len(got.RootFS.DiffIDs))
		}
		for _, d := range got.RootFS.DiffIDs {
			if who, ok := seen[d]; ok {
				t.Errorf("copy %d has layer %s of %s", i, d, who)
			}
			seen[d] = reg.ref(i)
		}
		if len(got.Config.Env) != 1 || got.Config.Env[0] != "PATH=/bin" {
			t.Errorf("copy %d has Env %q, want the base's", i, got.Config.Env)
		}
		if got.Architecture != baseIDs.Architecture || got.OS != baseIDs.OS {
			t.Errorf("copy %d is %s/%s, the base %s/%s", i, got.OS, got.Architecture, baseIDs.OS, baseIDs.Architecture)
		}
	}
}
