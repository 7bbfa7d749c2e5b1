package daemon

import (
	"testing"

	"github.com/agentd-project/agentd/agent/config"
	"github.com/agentd-project/agentd/agent/image"
)

// agentctl imports straight into the store (agentd stopped) with image.DefaultLimits: they must be agentd's.
func TestImageLimitDefaultsAgree(t *testing.T) {
	if got := imageLimits(config.Default()); got != image.DefaultLimits {
		t.Errorf("agentd's default image limits %+v, the image store's %+v", got, image.DefaultLimits)
	}
}
