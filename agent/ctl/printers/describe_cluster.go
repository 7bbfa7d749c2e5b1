package printers

import (
	"bytes"
	"io"
	"text/tabwriter"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DescribeNode prints a cluster node as `kubectl describe node` does, for what agentd records of a node: labels,
// creation time, the Ready condition with its last heartbeat, and the agent's version, OS and architecture.
func DescribeNode(w io.Writer, n *corev1.Node, now time.Time) error {
	return describe(w, now, func(d *describer) {
		d.write(level0, "Name:\t%s\n", n.Name)
		d.write(level0, "Roles:\t<none>\n")
		d.labels("Labels", n.Labels)
		d.write(level0, "CreationTimestamp:\t%s\n", n.CreationTimestamp.Format(time.RFC1123Z))
		d.write(level0, "Conditions:\n")
		d.write(level1, "Type\tStatus\tLastHeartbeatTime\tReason\tMessage\n")
		d.write(level1, "----\t------\t-----------------\t------\t-------\n")
		for _, c := range n.Status.Conditions {
			d.write(level1, "%s\t%s\t%s\t%s\t%s\n", c.Type, c.Status, c.LastHeartbeatTime.Format(time.RFC1123Z), c.Reason, c.Message)
		}
		d.write(level0, "System Info:\n")
		d.write(level1, "Operating System:\t%s\n", n.Status.NodeInfo.OperatingSystem)
		d.write(level1, "Architecture:\t%s\n", n.Status.NodeInfo.Architecture)
		d.write(level1, "Kubelet Version:\t%s\n", n.Status.NodeInfo.KubeletVersion)
	})
}

// DescribeDaemonSet prints a DaemonSet as `kubectl describe daemonset` does: selector, node selector, labels,
// annotations, the node counts of its status, the update strategy and the pod template.
func DescribeDaemonSet(w io.Writer, ds *appsv1.DaemonSet, now time.Time) error {
	return describe(w, now, func(d *describer) {
		st := ds.Status
		d.write(level0, "Name:\t%s\n", ds.Name)
		d.write(level0, "Namespace:\t%s\n", ds.Namespace)
		d.write(level0, "Selector:\t%s\n", metav1.FormatLabelSelector(ds.Spec.Selector))
		d.write(level0, "Node-Selector:\t%s\n", orNone(formatSelector(ds.Spec.Template.Spec.NodeSelector)))
		d.labels("Labels", ds.Labels)
		d.annotations(ds.Annotations)
		d.write(level0, "CreationTimestamp:\t%s\n", ds.CreationTimestamp.Format(time.RFC1123Z))
		d.write(level0, "Desired Number of Nodes Scheduled: %d\n", st.DesiredNumberScheduled)
		d.write(level0, "Current Number of Nodes Scheduled: %d\n", st.CurrentNumberScheduled)
		d.write(level0, "Number of Nodes Scheduled with Up-to-date Pods: %d\n", st.UpdatedNumberScheduled)
		d.write(level0, "Number of Nodes Scheduled with Available Pods: %d\n", st.NumberAvailable)
		d.write(level0, "Number of Nodes Misscheduled: %d\n", st.NumberMisscheduled)
		d.write(level0, "Pods Status:\t%d Ready / %d Not Ready\n", st.NumberReady, st.CurrentNumberScheduled-st.NumberReady)
		strategy := string(ds.Spec.UpdateStrategy.Type)
		if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.MaxUnavailable != nil {
			strategy += " (maxUnavailable: " + ru.MaxUnavailable.String() + ")"
		}
		d.write(level0, "Update Strategy:\t%s\n", strategy)
		t := ds.Spec.Template
		d.write(level0, "Pod Template:\n")
		d.base = 1
		d.labels("Labels", t.Labels)
		pod := &corev1.Pod{ObjectMeta: t.ObjectMeta, Spec: t.Spec}
		if len(t.Spec.InitContainers) > 0 {
			d.containers(pod, "Init Containers", t.Spec.InitContainers, nil)
		}
		d.containers(pod, "Containers", t.Spec.Containers, nil)
		d.volumes(t.Spec.Volumes)
		d.base = 0
	})
}

func describe(w io.Writer, now time.Time, body func(*describer)) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 8, 2, ' ', 0)
	body(&describer{tw: tw, now: now})
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(buf.Bytes())
	return err
}

func formatSelector(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	return formatLabels(m)
}
