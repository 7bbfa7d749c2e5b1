package ctl

import (
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// defaultContainerAnnotation names the container kubectl logs and exec use when -c is
// not given (KEP-2227).
const defaultContainerAnnotation = "kubectl.kubernetes.io/default-container"

// defaultContainer is the container `logs` and `exec` use without -c, chosen as kubectl
// chooses it: the one the default-container annotation names, else the first. Falling
// back to the first container of a pod that has others says so on warn, in kubectl's
// words; an annotation naming no container of the pod is reported and ignored.
func defaultContainer(pod *corev1.Pod, warn io.Writer) string {
	if len(pod.Spec.Containers) == 0 {
		return ""
	}
	if name := pod.Annotations[defaultContainerAnnotation]; name != "" {
		if hasContainer(pod, name) {
			return name
		}
		fmt.Fprintf(warn, "Default container name %q not found in pod %s\n", name, pod.Name)
	}
	name := pod.Spec.Containers[0].Name
	if len(pod.Spec.Containers) > 1 || len(pod.Spec.InitContainers) > 0 || len(pod.Spec.EphemeralContainers) > 0 {
		fmt.Fprintf(warn, "Defaulted container %q out of: %s\n", name, containerNames(pod))
	}
	return name
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return true
		}
	}
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// containerNames lists a pod's containers as kubectl does: the containers, then the
// ephemeral ones marked "(ephem)", then the init ones marked "(init)".
func containerNames(pod *corev1.Pod) string {
	var names []string
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range pod.Spec.EphemeralContainers {
		names = append(names, c.Name+" (ephem)")
	}
	for _, c := range pod.Spec.InitContainers {
		names = append(names, c.Name+" (init)")
	}
	return strings.Join(names, ", ")
}
