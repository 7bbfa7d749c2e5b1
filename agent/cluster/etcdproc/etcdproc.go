// Package etcdproc is the protocol between agentd and agent-etcd, the process that runs this node's etcd member in
// cluster mode. It is light on purpose: agentd imports it, and etcd's server packages stay out of agentd's binary
// (their package init alone cost agentd's every start about 10 ms).
//
// agentd (package store) starts agent-etcd with no arguments, in a process group of its own, and talks to it over
// three pipes:
//
//   - stdin: first a Config, one JSON line; then Requests, one JSON line each. End of input (agentd stopped or died)
//     stops the member gracefully, as a Close request does.
//   - stdout: Messages, one JSON line each: Ready or Failed once, then a Reply to every Request, in order, and
//     Stopped when the member stops (whatever the reason), just before the process exits.
//   - stderr: etcd's log, one slog JSON record a line, at or above Config.LogLevel; anything else (a Go panic) is
//     plain text. agentd logs the records through its own logger and keeps the plain text for its error message.
//
// Nothing secret crosses the pipes or the command line: the certificates' keys stay in the files Config names.
package etcdproc

// BinaryName is the executable's name; agentd looks for it beside its own.
const BinaryName = "agent-etcd"

// Config is the member's configuration: what etcd's embed.Config gets, already validated by agentd.
type Config struct {
	Name    string `json:"name"`
	DataDir string `json:"dataDir"`
	// PeerURL and ClientURL are advertised; the listeners bind to ListenPeerURL and ListenClientURL.
	PeerURL         string `json:"peerURL"`
	ClientURL       string `json:"clientURL"`
	ListenPeerURL   string `json:"listenPeerURL"`
	ListenClientURL string `json:"listenClientURL"`
	InitialCluster  string `json:"initialCluster"`
	ClusterToken    string `json:"clusterToken"`
	// New starts a new cluster; false joins an existing one or restarts from the data dir.
	New         bool `json:"new"`
	HeartbeatMs uint `json:"heartbeatMs"`
	ElectionMs  uint `json:"electionMs"`
	// CAFile is the only authority both listeners trust; NodeFile (the client listener's) and PeerFile (the peer
	// listener's, which takes only PeerCN) hold a certificate and its key each.
	CAFile   string `json:"caFile"`
	NodeFile string `json:"nodeFile"`
	PeerFile string `json:"peerFile"`
	PeerCN   string `json:"peerCN"`
	// LogLevel is the lowest slog level agentd prints; agent-etcd writes nothing below it.
	LogLevel int `json:"logLevel"`
}

// Request operations.
const (
	// OpQuiesce ends the member's client streams and waits for the requests on them in progress (Unary: refuses
	// unary requests too). Reply.OK says whether they all finished in time.
	OpQuiesce = "quiesce"
	// OpResume takes streams again after a quiesce without Unary.
	OpResume = "resume"
	// OpTransferLeadership hands leadership to another member if this one leads (etcd's
	// TryTransferLeadershipOnShutdown).
	OpTransferLeadership = "transfer-leadership"
	// OpStatus answers Reply.Leader.
	OpStatus = "status"
	// OpClose stops the member (after a quiesce with Unary) and exits; the answer is Stopped.
	OpClose = "close"
)

// Request is one line agentd writes after the Config.
type Request struct {
	Op    string `json:"op"`
	Unary bool   `json:"unary,omitempty"`
}

// Message kinds.
const (
	KindReady   = "ready"
	KindFailed  = "failed"
	KindReply   = "reply"
	KindStopped = "stopped"
)

// Message is one line agent-etcd writes.
type Message struct {
	Kind string `json:"kind"`
	// Ready: the member's ID and its cluster's, in hex as etcd prints them.
	ID      string `json:"id,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	// Failed, Reply: what went wrong.
	Error string `json:"error,omitempty"`
	// Reply.
	Op     string `json:"op,omitempty"`
	OK     bool   `json:"ok,omitempty"`
	Leader bool   `json:"leader,omitempty"`
	// Stopped: the member is no longer in its own view of the cluster (it was removed).
	Removed bool `json:"removed,omitempty"`
}
