package runtime

import (
	"os"
	"path/filepath"

	"github.com/agentd-project/agentd/agent/image"
)

// ImageFromStore gives the runtime's view of a stored image, with the image's
// /etc/passwd and /etc/group for user names (from the topmost layer that has them).
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
	out.Passwd = fromTopLayer(img.Layers, "etc/passwd")
	out.Group = fromTopLayer(img.Layers, "etc/group")
	return out
}

func fromTopLayer(layers []string, rel string) string {
	for i := len(layers) - 1; i >= 0; i-- {
		p := filepath.Join(layers[i], rel)
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > 1<<20 {
			continue
		}
		if b, err := os.ReadFile(p); err == nil {
			return string(b)
		}
	}
	return ""
}
