package daemonset

import appsv1 "k8s.io/api/apps/v1"

// NodeReport is what the cluster knows about one node for one DaemonSet. Status expects
// one report per node of the cluster.
type NodeReport struct {
	// Node is the node's name.
	Node string
	// Matches says the node should run the DaemonSet (Matches with the node's labels).
	Matches bool
	// Running says a pod of the DaemonSet is on the node and has not terminated.
	Running bool
	// Ready is the pod's Ready condition; it counts only when Running.
	Ready bool
	// TemplateHash is the controller-revision-hash label of the node's pod.
	TemplateHash string
}

// Status computes a DaemonSet's status from its nodes' reports, as Kubernetes' DaemonSet
// controller does: desiredNumberScheduled counts the matching nodes, currentNumberScheduled
// those of them that run a pod, numberMisscheduled the nodes that run a pod but do not
// match, numberReady and numberAvailable the matching nodes whose pod is ready (agentd has
// no minReadySeconds, so the two are equal), updatedNumberScheduled the matching nodes
// whose pod runs the current template (TemplateHash), numberUnavailable the matching nodes
// without an available pod, and observedGeneration is the DaemonSet's generation.
func Status(ds *appsv1.DaemonSet, reports []NodeReport) appsv1.DaemonSetStatus {
	hash := TemplateHash(ds)
	st := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation}
	for _, r := range reports {
		if !r.Matches {
			if r.Running {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if !r.Running {
			continue
		}
		st.CurrentNumberScheduled++
		if r.TemplateHash == hash {
			st.UpdatedNumberScheduled++
		}
		if r.Ready {
			st.NumberReady++
			st.NumberAvailable++
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	return st
}
