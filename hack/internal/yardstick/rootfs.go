package yardstick

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Unpack extracts the image archive's filesystem (its layers flattened, as
// `docker export` would give it) into dir/rootfs and returns that directory: the
// read-only lower layer of every container's overlay rootfs, for both monitors.
// The archive is the one `make image` writes (hack/testimage), read through its
// docker-style manifest.json.
func Unpack(ctx context.Context, archive, dir string) (string, error) {
	img, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		return "", fmt.Errorf("read image archive %s (run `make image`): %w", archive, err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return "", err
	}
	fs := mutate.Extract(img)
	defer fs.Close()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "tar", "-x", "-f", "-", "-C", rootfs)
	cmd.Stdin, cmd.Stderr = fs, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("unpack %s: tar: %w: %s", archive, err, strings.TrimSpace(stderr.String()))
	}
	return rootfs, nil
}
