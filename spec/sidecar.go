package spec

import corev1 "k8s.io/api/core/v1"

// IsSidecar reports whether c, an init container, is a sidecar (KEP-753): one
// with restartPolicy Always, which keeps running beside the app containers
// instead of running to completion. kubelet's IsRestartableInitContainer.
func IsSidecar(c *corev1.Container) bool {
	return c != nil && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}
