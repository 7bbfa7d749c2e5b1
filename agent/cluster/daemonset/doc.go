// Package daemonset holds the pure decisions of agentd's cluster mode about apps/v1
// DaemonSets: every node whose labels match a DaemonSet's node selector runs one pod of it.
// Nothing here does I/O; the cluster store, the agent loop and agentctl call these
// functions and act on their results.
//
//   - Decode reads one DaemonSet manifest strictly (unknown or unsupported fields are errors
//     naming their path), validates it, applies Kubernetes' defaults and returns every error
//     at once as a *spec.FieldErrors. Its pod template follows exactly the spec package's
//     field support and rules, plus template.spec.nodeSelector, which picks the nodes.
//   - Matches says whether a node runs a DaemonSet; PodFor builds the pod it runs, named
//     <daemonset>-<node> and identified by TemplateHash, the hash of the pod template.
//   - MaxUnavailable resolves how many pods a rolling update may take down at once;
//     Status computes the DaemonSet's status from what each node reports.
//
// Nothing configures this package: a node's name and labels come in as arguments.
package daemonset
