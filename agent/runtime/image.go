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

// ErrImageNeverPull is the reason of a container whose image is not in the local
// store: agentd does not pull images (yet). ResolveImage's error matches it
// (errors.Is); its text is the message alone, without the reason, since status and
// events show the reason beside it.
var ErrImageNeverPull = errors.New("ErrImageNeverPull")

// ImageNeverPullError says that an image is not in the local store.
type ImageNeverPullError struct{ Ref string }

func (e *ImageNeverPullError) Error() string {
	return fmt.Sprintf("image %q is not present on this node and agentd does not pull images: import it with `agentctl image import FILE`", e.Ref)
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
