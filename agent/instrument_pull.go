package agent

import (
	"context"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/agentd-project/agentd/agent/image/pull"
	"github.com/agentd-project/agentd/agent/metrics"
)

// meteredPuller observes every Pull of the puller it wraps:
// agentd_image_pulls_in_progress while it runs, then agentd_image_pulls_total
// by result, agentd_image_pull_duration_seconds and, on success,
// agentd_image_pulls_bytes_total. Every caller's pull counts (a manifest pod's,
// `agentctl image pull`'s, the CRI's), each Pull call once, even when it
// shares one transfer with another (CRI-O counts per request too); the
// duration is the caller's, waiting included (kubelet's
// kubelet_image_pull_duration_seconds).
type meteredPuller struct {
	p ImagePuller
	m *metrics.Metrics
}

// Pull implements ImagePuller.
func (mp meteredPuller) Pull(ctx context.Context, ref string, auth authn.Authenticator, progress func(pull.Progress)) (pull.Result, error) {
	done := mp.m.ImagePullStarted()
	res, err := mp.p.Pull(ctx, ref, auth, progress)
	done(res.Size, err)
	return res, err
}

// setMetrics makes the image manager's puller, now and after every
// setPuller, observed by m (nil: not observed).
func (m *imageManager) setMetrics(ms *metrics.Metrics) {
	m.mu.Lock()
	m.metrics = ms
	m.mu.Unlock()
}
