package runtime

import (
	"errors"
	"fmt"

	"github.com/agentd-project/agentd/agent/image"
)

// ImageFromStore gives the runtime's view of a stored image.
func ImageFromStore(img *image.Image) *Image {
	out := &Image{
		ID:         img.ID,
		Layers:     img.Layers,
		Entrypoint: img.Config.Entrypoint,
		Cmd:        img.Config.Cmd,
		Env:        img.Config.Env,
		WorkingDir: img.Config.WorkingDir,
		User:       img.Config.User,
	}
	if len(img.Names) > 0 {
		out.Name = img.Names[0]
	}
	return out
}

// ErrImageNeverPull matches (errors.Is) ResolveImage's error for an image that is
// not in the local store: whether it is then pulled is the pull policy's
// business (the agent's image manager); under the Never policy the container
// waits with this reason, kubelet's.
var ErrImageNeverPull = errors.New("ErrImageNeverPull")

// ImageNeverPullError says that an image is not in the local store.
type ImageNeverPullError struct{ Ref string }

func (e *ImageNeverPullError) Error() string {
	return fmt.Sprintf("image %q is not present on this node", e.Ref)
}

// Is makes the error match ErrImageNeverPull.
func (e *ImageNeverPullError) Is(target error) bool { return target == ErrImageNeverPull }

// ResolveImage finds a container's image in the local store.
func ResolveImage(store *image.Store, ref string) (*Image, error) {
	img, err := store.Get(ref)
	if errors.Is(err, image.ErrNotFound) {
		return nil, &ImageNeverPullError{Ref: ref}
	}
	if err != nil {
		return nil, err
	}
	return ImageFromStore(img), nil
}
