package printers

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

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
		line("Cluster", "none (agentctl cluster init, or agentctl cluster join URL --token T --ca-cert-hash H)")
		return
	}
	line("Cluster ID", st.ClusterID)
	line("Node Name", st.NodeName)
	switch {
	case st.EtcdMember:
		line("Etcd", "embedded member (peer "+st.PeerURL+", client "+st.ClientURL+")")
	case st.External:
		line("Etcd", "external, as a client")
	default:
		line("Etcd", "the members', as a client")
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
	if st.PodSecurity != "" {
		line("Pod Security", st.PodSecurity)
	}
	if st.JoinURL != "" {
		js := st.JoinURL
		if st.ServesJoins {
			js += " (served by this node)"
		}
		line("Join Service", js)
	}
	admin := "no"
	if st.AdminCredential {
		admin = "yes"
	}
	line("Admin Credential", admin)
	line("Node Labels", formatLabels(st.NodeLabels))
}

// PrintTokens prints `agentctl cluster token list` as kubeadm does: TOKEN (id and a masked secret), TTL, EXPIRES,
// USAGES, DESCRIPTION.
func PrintTokens(w io.Writer, list []api.TokenInfo, now time.Time) error {
	rows := make([][]string, 0, len(list))
	for _, t := range list {
		ttl, expires := "<forever>", "<never>"
		if !t.Expires.IsZero() {
			expires = t.Expires.UTC().Format(time.RFC3339)
			ttl = "<expired>"
			if d := t.Expires.Sub(now); d > 0 {
				ttl = HumanDuration(d)
			}
		}
		usage := "join"
		if t.Once {
			usage = "join once"
			if t.UsedBy != "" {
				usage = "used by " + t.UsedBy
			}
		}
		if t.ControlPlane {
			usage += ",control-plane"
		}
		rows = append(rows, []string{t.ID + "." + strings.Repeat("*", 16), ttl, expires, usage, orNone(t.Description)})
	}
	return writeTable(w, []string{"TOKEN", "TTL", "EXPIRES", "USAGES", "DESCRIPTION"}, rows, false)
}

// PrintCerts prints `agentctl cluster certs`, kubeadm's `certs check-expiration` columns: CERTIFICATE SUBJECT
// EXPIRES RESIDUAL TIME RENEWS.
func PrintCerts(w io.Writer, list []api.CertInfo, now time.Time) error {
	rows := make([][]string, 0, len(list))
	for _, c := range list {
		residual := "<expired>"
		if d := c.NotAfter.Sub(now); d > 0 {
			residual = HumanDuration(d)
		}
		renews := "no"
		if !c.RenewAt.IsZero() {
			renews = c.RenewAt.UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{c.Name, c.Subject, c.NotAfter.UTC().Format(time.RFC3339), residual, renews})
	}
	return writeTable(w, []string{"CERTIFICATE", "SUBJECT", "EXPIRES", "RESIDUAL TIME", "RENEWS"}, rows, false)
}
