package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ---- 1b. manifest written -> container output, the image pulled first

// pullRegistry is go-containerregistry's registry on a loopback port, in this
// process, holding one copy of the test image per pod of the pull latency
// measurement: repo:pull-<i>. Each copy's layers differ from the imported
// image's and from each other's (a file naming the copy is added to each), so
// that agentd has none of them and every pod's pull downloads and unpacks the
// whole image, as a first pull on a node does.
type pullRegistry struct {
	srv  *httptest.Server
	repo string // 127.0.0.1:PORT/bench/busybox
	size int64  // compressed size of one copy (manifest's config and layers)
}

func startPullRegistry(archive string, copies int) (*pullRegistry, error) {
	base, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", archive, err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	r := &pullRegistry{srv: srv, repo: strings.TrimPrefix(srv.URL, "http://") + "/bench/busybox"}
	for i := range copies {
		img, err := uniqueCopy(base, i)
		if err == nil {
			err = crane.Push(img, r.ref(i), crane.Insecure)
		}
		if err == nil && i == 0 {
			r.size, err = compressedSize(img)
		}
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("pushing copy %d of the test image to the loopback registry: %w", i, err)
		}
	}
	return r, nil
}

func (r *pullRegistry) ref(i int) string { return fmt.Sprintf("%s:pull-%02d", r.repo, i) }

func (r *pullRegistry) close() { r.srv.Close() }

// uniqueCopy is base with the file /.bench-pull-<i>-<layer> added to each of
// its layers (so each layer's diff ID is new) and base's config otherwise.
func uniqueCopy(base v1.Image, i int) (v1.Image, error) {
	cf, err := base.ConfigFile()
	if err != nil {
		return nil, err
	}
	ls, err := base.Layers()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs, cf.History = nil, nil
	img, err := mutate.ConfigFile(empty.Image, cf)
	if err != nil {
		return nil, err
	}
	var out []v1.Layer
	for j, l := range ls {
		b, err := retar(l, fmt.Sprintf(".bench-pull-%d-%d", i, j))
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", j, err)
		}
		nl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
		if err != nil {
			return nil, err
		}
		out = append(out, nl)
	}
	return mutate.AppendLayers(img, out...)
}

// retar copies l's tar stream and adds an empty file named extra at its root.
func retar(l v1.Layer, extra string) ([]byte, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: extra, Mode: 0o644}); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func compressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}
