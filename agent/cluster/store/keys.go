package store

import (
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Key layout. Everything one node writes lives under its own prefix, /agentd/node/<name>/, so that etcd's access
// control can let each node write exactly its own records and read the rest of /agentd/ (see NodeRole): a node's
// credentials cannot change a DaemonSet, another node's record or the cluster's settings. Bootstrap tokens live
// outside /agentd/, where only the admin reads them.
//
//	/agentd/daemonsets/<namespace>/<name>          apps/v1 DaemonSet (admin)
//	/agentd/config                                 the cluster's settings (admin)
//	/agentd/node/<node>/record                     the node's record, no lease
//	/agentd/node/<node>/alive                      liveness, on the node's lease
//	/agentd/node/<node>/dspods/<namespace>/<ds>    the node's report on its pod of a DaemonSet, on the lease
//	/agentd/node/<node>/rollout/<namespace>/<ds>   the node's claim of a rolling-update slot, on the lease
//	/agentd-private/bootstrap-tokens/<id>          join tokens (admin only)
const (
	// keyPrefix is the root of everything the nodes read.
	keyPrefix        = "/agentd/"
	daemonSetsPrefix = keyPrefix + "daemonsets/"
	configKey        = keyPrefix + "config"
	nodesRoot        = keyPrefix + "node/"
	tokensPrefix     = "/agentd-private/bootstrap-tokens/"
)

// Names of the keys under a node's prefix.
const (
	nodeRecord    = "record"
	nodeAlive     = "alive"
	nodeDSPods    = "dspods/"
	nodeSlotClaim = "rollout/"
)

// NodePrefix is where node keeps everything it writes; its etcd role may write there and nowhere else.
func NodePrefix(node string) string { return nodesRoot + node + "/" }

func daemonSetKey(ns, name string) string { return daemonSetsPrefix + ns + "/" + name }
func nodeRecordKey(node string) string    { return NodePrefix(node) + nodeRecord }
func nodeAliveKey(node string) string     { return NodePrefix(node) + nodeAlive }
func dsPodKey(node, ns, ds string) string { return NodePrefix(node) + nodeDSPods + ns + "/" + ds }
func slotClaimKey(node, ns, ds string) string {
	return NodePrefix(node) + nodeSlotClaim + ns + "/" + ds
}

// nodeKey splits a key under nodesRoot into the node's name and the rest ("record", "dspods/ns/ds", ...).
func nodeKey(key []byte) (node, rest string, ok bool) {
	s, found := strings.CutPrefix(string(key), nodesRoot)
	if !found {
		return "", "", false
	}
	return strings.Cut(s, "/")
}

// keysOf picks, from a listing of nodesRoot, the keys whose part after the node's name is rest, by node.
func keysOf(kvs []*mvccpb.KeyValue, rest string) map[string]*mvccpb.KeyValue {
	out := map[string]*mvccpb.KeyValue{}
	for _, kv := range kvs {
		if node, r, ok := nodeKey(kv.Key); ok && r == rest {
			out[node] = kv
		}
	}
	return out
}
