//go:build tools

// Package tools pins the versions of the command-line tools agentd's CRI tests
// drive it with. It is its own module, so their dependencies (k8s.io/kubectl,
// ginkgo, gomega, …) never reach the main module's go.mod or binaries.
// hack/build-cri-tools.sh builds them into _output/tools/.
//
// sigs.k8s.io/cri-tools v1.37.0 builds as it is: go mod tidy resolves every
// k8s.io/* module to v0.37.0 (the release cri-tools v1.37.0 itself requires),
// and no replace directive is needed. The module's go directive (1.26.6) is
// the one cri-tools v1.37.0 requires.
package tools

import (
	_ "sigs.k8s.io/cri-tools/cmd/crictl"
	_ "sigs.k8s.io/cri-tools/cmd/critest"
)
