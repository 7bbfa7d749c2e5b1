// Package store is cluster mode's storage layer: it runs this node's etcd member (a process of its own, agent-etcd:
// see StartMember), remembers which cluster the node belongs to, and gives the agent typed access to the state the
// nodes share through etcd.
//
// What lives where:
//   - <root>/cluster/membership.json: the cluster this node is in (LoadMembership, SaveMembership). It is what makes
//     membership survive an agent restart: Resume starts the member again from it. No file means "not in a cluster".
//   - <root>/cluster/etcd: the embedded member's data directory (StartMember, Init, StartJoining). Leave deletes it.
//   - <root>/cluster/pki (PKIDir): the certificates both of the member's listeners require (mutual TLS always) and
//     the node's etcd identity; <root>/cluster/admin.conf (AdminCredentialPath): the admin credential.
//   - keys under /agentd/ in etcd (Client, layout in keys.go): apps/v1 DaemonSets and the cluster's settings (the
//     admin's), and under /agentd/node/<name>/ each node's record, liveness lease, pod status reports and
//     rolling-update slot claims, which only that node (and the admin) may write (auth.go: etcd users and roles
//     named after certificates' common names); bootstrap tokens under /agentd-private/, the admin's alone.
//
// Consensus, replication and leader election are etcd's (go.etcd.io/etcd/server/v3/embed, which only agent-etcd,
// package etcdmember, links); this package only decides key layout, JSON encoding, and the few transactions that
// must be atomic.
//
// Settings that change it (agentd's config): root (where membership and etcd data live); cluster.etcd-endpoints
// with cluster.etcd-ca-file, -cert-file and -key-file (when set, the node is only a client of that external etcd:
// JoinAsClient and Connect, no member); the embedded member's
// peer and client URLs (loopback by default, DefaultPeerURL and DefaultClientURL; other hosts can only join when
// they are routable addresses); node-name (the etcd member name and the node record's name); cluster.node-labels
// (Node.Labels). The node lease TTL (10 s in production) decides how fast a dead node shows NotReady and frees its
// update slot.
//
// etcd's own logs go to the logr.Logger passed in: etcd info at V(1), debug at V(4), warnings and errors as such.
package store
