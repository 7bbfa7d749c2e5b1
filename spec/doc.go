// Package spec turns Kubernetes Pod manifests (YAML or JSON) into core/v1 Pods that
// agentd can run. It is pure: no I/O, no global state.
//
// Parse is the whole pipeline: Decode (strict: unknown or duplicate fields, a wrong
// kind or apiVersion, or more than one document are errors naming the path),
// CheckSupported (a field of core/v1 that agentd does not implement is an error, never
// silently ignored; the list is SupportedFields, documented in docs/manifest-fields.md),
// SetDefaults (kubelet's defaults) and Validate (apimachinery's validation helpers).
// Every error of a file is returned at once, each with its field path.
//
// PodUID and ContainerHash give the identities the agent uses to decide what changed.
// TerminationGracePeriod and ProbeTerminationGracePeriod give the grace periods
// containers are stopped with, and hold the one 30 s default.
// The node name and the manifest path (Source) change the UID; nothing else configures
// this package.
package spec
