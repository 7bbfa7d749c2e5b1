package printers

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/agentd-project/agentd/agent/api"
)

// PrintClusterStatus prints `agentctl cluster status`: one "Key: value" line each.
func PrintClusterStatus(w io.Writer, st *api.ClusterStatus) error {
	var b bytes.Buffer
	clusterLines(&b, st, "")
	_, err := w.Write([]byte(terminalEscaper.Replace(b.String())))
	return err
}

// clusterLines writes the cluster status, each line indented by indent.
func clusterLines(b *bytes.Buffer, st *api.ClusterStatus, indent string) {
	line := func(key string, value any) { fmt.Fprintf(b, "%s%s: %v\n", indent, key, value) }
	if !st.InCluster {
		line("Cluster", "none (agentctl cluster init, or agentctl cluster join ENDPOINT)")
		return
	}
	line("Cluster ID", st.ClusterID)
	line("Node Name", st.NodeName)
	if st.EtcdMember {
		line("Etcd", "embedded member (peer "+st.PeerURL+", client "+st.ClientURL+")")
	} else {
		line("Etcd", "external, as a client")
	}
	line("Endpoints", strings.Join(st.Endpoints, ","))
	if !st.JoinedAt.IsZero() {
		line("Joined", st.JoinedAt.UTC().Format("2006-01-02T15:04:05Z"))
	}
	state := "connected, registered"
	switch {
	case !st.Connected:
		state = "not connected"
	case !st.Registered:
		state = "connected, not registered"
	}
	if st.LastError != "" && !st.Registered {
		state += " (" + st.LastError + ")"
	}
	line("State", state)
	line("DaemonSets", st.DaemonSets)
	line("Node Labels", formatLabels(st.NodeLabels))
}
