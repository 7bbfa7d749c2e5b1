package printers

import (
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// PrintNodes prints nodes as `kubectl get nodes -o <format>` does, sorted by name: NAME STATUS AGE VERSION (wide
// adds OS-IMAGE's neighbours OPERATING-SYSTEM and ARCH, and the labels), or json, yaml, name. STATUS is Ready,
// NotReady (condition False or Unknown), or Unknown without a Ready condition.
func PrintNodes(w io.Writer, nodes []corev1.Node, format string, noHeaders bool, now time.Time) error {
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	switch format {
	case FormatTable, FormatWide:
		header := []string{"NAME", "STATUS", "AGE", "VERSION"}
		if format == FormatWide {
			header = append(header, "OS", "ARCH", "LABELS")
		}
		rows := make([][]string, 0, len(sorted))
		for _, n := range sorted {
			row := []string{n.Name, NodeStatus(&n), since(n.CreationTimestamp, now), n.Status.NodeInfo.KubeletVersion}
			if format == FormatWide {
				row = append(row, orNone(n.Status.NodeInfo.OperatingSystem), orNone(n.Status.NodeInfo.Architecture), formatLabels(n.Labels))
			}
			rows = append(rows, row)
		}
		return writeTable(w, header, rows, noHeaders)
	case FormatJSON, FormatYAML:
		for i := range sorted {
			sorted[i].APIVersion, sorted[i].Kind = "v1", "Node"
		}
		if format == FormatJSON {
			return writeJSON(w, newList(sorted))
		}
		return writeYAML(w, newList(sorted))
	case FormatName:
		for _, n := range sorted {
			if _, err := io.WriteString(w, "node/"+n.Name+"\n"); err != nil {
				return err
			}
		}
		return nil
	}
	for i := range sorted {
		sorted[i].APIVersion, sorted[i].Kind = "v1", "Node"
	}
	if ok, err := printTemplate(w, format, newList(sorted), noHeaders); ok {
		return err
	}
	return unknownFormat(format, allowedFormats()...)
}

// NodeStatus is kubectl's STATUS column of a node.
func NodeStatus(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return "Ready"
			}
			return "NotReady"
		}
	}
	return "Unknown"
}

func formatLabels(l map[string]string) string {
	if len(l) == 0 {
		return "<none>"
	}
	kv := make([]string, 0, len(l))
	for k, v := range l {
		kv = append(kv, k+"="+v)
	}
	slices.Sort(kv)
	return strings.Join(kv, ",")
}

// PrintNode prints one node as `kubectl get node NAME -o <format>` does: json,
// yaml and templates print the Node itself (apiVersion v1, kind Node), the other
// formats as PrintNodes.
func PrintNode(w io.Writer, n *corev1.Node, format string, noHeaders bool, now time.Time) error {
	c := *n
	c.APIVersion, c.Kind = "v1", "Node"
	if ok, err := printSingle(w, &c, format, noHeaders); ok {
		return err
	}
	return PrintNodes(w, []corev1.Node{*n}, format, noHeaders, now)
}
