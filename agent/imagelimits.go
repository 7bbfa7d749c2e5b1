package agent

import "github.com/agentd-project/agentd/agent/image"

// SetImageLimits changes the disk budget of the image imports that start from now on (SIGHUP).
func (a *Agent) SetImageLimits(l image.Limits) { a.images.SetLimits(l) }
