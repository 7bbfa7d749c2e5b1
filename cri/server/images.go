package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-project/agentd/agent/image"
)

// ListImages lists the image store, or, with an image filter, the one image it
// names (none when absent).
func (s *Server) ListImages(_ context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	if ref := req.GetFilter().GetImage().GetImage(); ref != "" {
		img, err := s.b.Image(ref)
		switch {
		case errors.Is(err, image.ErrNotFound):
			return &runtimeapi.ListImagesResponse{}, nil
		case err != nil:
			return nil, err
		}
		return &runtimeapi.ListImagesResponse{Images: []*runtimeapi.Image{criImage(img)}}, nil
	}
	imgs, err := s.b.Images()
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]*runtimeapi.Image, 0, len(imgs))
	for i := range imgs {
		out = append(out, criImage(&imgs[i]))
	}
	return &runtimeapi.ListImagesResponse{Images: out}, nil
}

// ImageStatus describes one image; an absent image is no error but a nil
// image, as the CRI wants. Verbose adds the image's config as JSON in
// info["info"].
func (s *Server) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("%w: ImageStatus names no image", ErrInvalidArgument)
	}
	img, err := s.b.Image(ref)
	switch {
	case errors.Is(err, image.ErrNotFound):
		return &runtimeapi.ImageStatusResponse{}, nil
	case err != nil:
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: criImage(img)}
	if req.GetVerbose() {
		info, err := json.Marshal(verboseImage{ID: img.ID, Digest: img.Digest, Created: img.Created, Layers: len(img.Layers), Config: img.Config})
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img.ID, err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// verboseImage is ImageStatus' verbose info.
type verboseImage struct {
	ID      string       `json:"id"`
	Digest  string       `json:"digest"`
	Created time.Time    `json:"created,omitzero"`
	Layers  int          `json:"layers"`
	Config  image.Config `json:"config"` // the OCI config's field names: Entrypoint, Cmd, Env, WorkingDir, User, ExposedPorts
}

// RemoveImage removes an image with all its names. An absent image is no
// error (the CRI's RemoveImage is idempotent); an image a container uses is
// FailedPrecondition.
func (s *Server) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := req.GetImage().GetImage()
	if ref == "" {
		return nil, fmt.Errorf("%w: RemoveImage names no image", ErrInvalidArgument)
	}
	if err := s.b.RemoveImage(ctx, ref); err != nil && !errors.Is(err, image.ErrNotFound) {
		return nil, err
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the usage of the filesystem holding the image store.
func (s *Server) ImageFsInfo(context.Context, *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	fs, err := s.b.ImageFs()
	if err != nil {
		return nil, fmt.Errorf("image filesystem usage: %w", err)
	}
	return &runtimeapi.ImageFsInfoResponse{ImageFilesystems: []*runtimeapi.FilesystemUsage{{
		Timestamp:  s.now().UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: fs.Mountpoint},
		UsedBytes:  &runtimeapi.UInt64Value{Value: fs.UsedBytes},
		InodesUsed: &runtimeapi.UInt64Value{Value: fs.InodesUsed},
	}}}, nil
}

// criImage is img as the CRI shows it: RepoTags are its names (those that are
// tags), RepoDigests repo@digest for each of its repositories and the names
// that are digest references, Uid or Username its config's user.
func criImage(img *image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:   img.ID,
		Size: uint64(max(img.Size, 0)),
		Spec: &runtimeapi.ImageSpec{Image: img.ID},
	}
	for _, n := range img.Names {
		if strings.Contains(n, "@") {
			out.RepoDigests = append(out.RepoDigests, n)
			continue
		}
		out.RepoTags = append(out.RepoTags, n)
		if img.Digest != "" {
			out.RepoDigests = append(out.RepoDigests, repository(n)+"@"+img.Digest)
		}
	}
	slices.Sort(out.RepoDigests)
	out.RepoDigests = slices.Compact(out.RepoDigests)
	uid, username := imageUser(img.Config.User)
	if uid != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *uid}
	}
	out.Username = username
	return out
}

// repository is a normalised tag name without its tag: "docker.io/library/busybox:1.36" → "docker.io/library/busybox".
func repository(name string) string {
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[:i]
	}
	return name
}

// imageUser splits an image config's User ("uid", "name", "uid:gid",
// "name:group") into the CRI's uid or username; the group is not reported.
func imageUser(user string) (uid *int64, username string) {
	user, _, _ = strings.Cut(user, ":")
	if user == "" {
		return nil, ""
	}
	if n, err := strconv.ParseUint(user, 10, 32); err == nil {
		id := int64(n)
		return &id, ""
	}
	return nil, user
}
