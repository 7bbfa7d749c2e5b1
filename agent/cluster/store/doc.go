// Package store is cluster mode's storage layer: it runs this node's embedded etcd member, remembers which cluster
// the node belongs to, and gives the agent typed access to the state the nodes share through etcd.
//
// What lives where:
//   - <root>/cluster/membership.json: the cluster this node is in (LoadMembership, SaveMembership). It is what makes
//     membership survive an agent restart: Resume starts the member again from it. No file means "not in a cluster".
//   - <root>/cluster/etcd: the embedded member's data directory (StartMember, Init, Join). Leave deletes it.
//   - keys under /agentd/ in etcd (Client): node records and their liveness leases, apps/v1 DaemonSets, per-node pod
//     status reports, and the rolling-update slots that cap how many nodes replace their pod at once.
//
// Consensus, replication and leader election are etcd's (go.etcd.io/etcd/server/v3/embed); this package only
// decides key layout, JSON encoding, and the few transactions that must be atomic.
//
// Settings that change it (agentd's config): root (where membership and etcd data live); cluster.etcd-endpoints
// (when set, the node is only a client of that external etcd: JoinAsClient and Connect, no member); the embedded member's
// peer and client URLs (loopback by default, DefaultPeerURL and DefaultClientURL; other hosts can only join when
// they are routable addresses); node-name (the etcd member name and the node record's name); cluster.node-labels
// (Node.Labels). The node lease TTL (10 s in production) decides how fast a dead node shows NotReady and frees its
// update slot.
//
// etcd's own logs go to the logr.Logger passed in: etcd info at V(1), debug at V(4), warnings and errors as such.
package store
