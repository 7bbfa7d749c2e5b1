package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/agentd-project/agentd/agent/cluster/pki"
	"github.com/agentd-project/agentd/agent/internal/atomicfile"
)

// Membership is what a node remembers of its cluster, persisted in <root>/cluster/membership.json. The file exists
// exactly while the node is in a cluster: Init and Join write it last, Leave removes it last.
type Membership struct {
	// ClusterName identifies the cluster: the etcd cluster ID in hex.
	ClusterName string `json:"clusterName"`
	// NodeName is this node's name, also its etcd member name.
	NodeName string `json:"nodeName"`
	// Member is true when this node runs an embedded etcd member, false when it is only a client (external etcd).
	Member bool `json:"member"`
	// PeerURL and ClientURL are the embedded member's URLs; empty for a client-only node.
	PeerURL   string `json:"peerURL,omitempty"`
	ClientURL string `json:"clientURL,omitempty"`
	// External is true when the cluster's etcd is not agentd's (cluster.etcd-endpoints): the credentials are the
	// files cluster.etcd-ca-file, -cert-file and -key-file name, not PKIDir's.
	External bool `json:"external,omitempty"`
	// JoinURL is the join service this node joined through (or, on the node that ran `cluster init`, its own): it
	// signs renewed certificates and makes member changes for the node.
	JoinURL string `json:"joinURL,omitempty"`
	// Endpoints are the client URLs of the cluster's members, as known when this node joined.
	Endpoints []string  `json:"endpoints"`
	JoinedAt  time.Time `json:"joinedAt"`
}

// ErrNotInCluster is returned by operations that need this node to be in a cluster when it is not.
var ErrNotInCluster = errors.New("this node is not in a cluster")

// ErrAlreadyInCluster is returned by Init and Join when this node already is in a cluster.
var ErrAlreadyInCluster = errors.New("this node is already in a cluster")

func clusterDir(root string) string     { return filepath.Join(root, "cluster") }
func membershipPath(root string) string { return filepath.Join(root, "cluster", "membership.json") }

// DataDir is where the embedded etcd member under root keeps its data.
func DataDir(root string) string { return filepath.Join(root, "cluster", "etcd") }

// PKIDir is where the node keeps its certificates and keys: the cluster's CA, its own, its etcd member's peer
// certificate, and, on a node that signs (the one that ran `cluster init`), the CA's key.
func PKIDir(root string) pki.Dir { return pki.Dir(filepath.Join(root, "cluster", "pki")) }

// AdminCredentialPath is the cluster admin credential `cluster init` writes (kubeadm's admin.conf): who holds it
// may change DaemonSets, create join tokens and remove nodes. Copy it to another node's path to administer from
// there.
func AdminCredentialPath(root string) string { return filepath.Join(root, "cluster", "admin.conf") }

// LoadMembership reads <root>/cluster/membership.json. It returns (nil, nil) when the node is not in a cluster.
func LoadMembership(root string) (*Membership, error) {
	p := membershipPath(root)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cluster membership: %w", err)
	}
	var m Membership
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("cluster membership %s is corrupt (fix or delete it, then join again): %w", p, err)
	}
	if m.NodeName == "" || len(m.Endpoints) == 0 {
		return nil, fmt.Errorf("cluster membership %s is incomplete: want nodeName and endpoints (fix or delete it, then join again)", p)
	}
	return &m, nil
}

// SaveMembership writes m to <root>/cluster/membership.json atomically: a crash leaves the old file or the new one.
func SaveMembership(root string, m *Membership) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode cluster membership: %w", err)
	}
	if err := writeFileAtomic(membershipPath(root), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save cluster membership: %w", err)
	}
	return nil
}

// RemoveMembership deletes the membership file; a missing file is not an error.
func RemoveMembership(root string) error {
	if err := os.Remove(membershipPath(root)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove cluster membership: %w", err)
	}
	return syncDir(clusterDir(root))
}

// writeFileAtomic replaces path whole (see atomicfile), creating its directory;
// a temporary file a crash left is removed by the next write.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, perm)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
