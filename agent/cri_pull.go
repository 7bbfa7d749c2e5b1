package agent

import (
	"context"

	"github.com/google/go-containerregistry/pkg/authn"
)

// PullImage implements criserver.PullBackend: the CRI's pull, through the same
// puller (and so the same mirrors, TLS settings, singleflight and metrics) as
// manifest pods and `agentctl image pull`. auth, when not nil, stands for the
// node's keychain for ref's registry (package pull never hands it to a
// mirror). Neither auth nor anything derived from it is logged: the puller's
// errors name the image and the registry's answer, not the credentials.
func (b criBackend) PullImage(ctx context.Context, ref string, auth authn.Authenticator) (string, error) {
	a := b.a
	p := a.imageMgr.currentPuller()
	if p == nil {
		return "", errNoPuller
	}
	log := a.log.WithName("cri").WithValues("image", ref, "requestCredentials", auth != nil)
	res, err := p.Pull(ctx, ref, auth, nil)
	if err != nil {
		log.Info("Image pull failed", "error", err.Error())
		return "", err // the puller's errors start with "pulling <image>: "
	}
	log.Info("Image pulled", "id", res.ImageID, "digest", res.Digest, "size", res.Size, "duration", res.Duration)
	a.resetImageRetries()
	return res.ImageID, nil
}
