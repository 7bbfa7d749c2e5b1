// Package version holds the build's version, set by the Makefile through -ldflags,
// and the Kubernetes release whose behaviour agentd follows.
package version

// Version is the release (git describe) the binaries were built from.
var Version = "dev"

// Kubernetes is the <major>.<minor> of the Kubernetes release agentd follows: that
// of the k8s.io/api module it is built with (v0.N.x is Kubernetes 1.N). Where
// kubelet names its release on the wire, agentd names this one: probes send
// User-Agent kube-probe/<Kubernetes>, lifecycle hooks kube-lifecycle/<Kubernetes>.
// A test keeps it in step with go.mod.
const Kubernetes = "1.37"
