// Package api is agentd's HTTP/JSON API on a Unix socket (<run-dir>/agent.sock, mode
// 0600, peers checked with SO_PEERCRED) and its client. Objects are Kubernetes-shaped:
// pods are core/v1 Pods with real status, events are core/v1 Events.
package api

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// Paths of the API.
const (
	PathPods    = "/api/v1/pods"   // GET: PodList (?watch=true streams WatchEvents); /{namespace}/{name}: Pod
	PathEvents  = "/api/v1/events" // GET: EventList
	PathInfo    = "/api/v1/info"   // GET: Info
	PathVersion = "/version"       // GET: Version
	PathImages  = "/api/v1/images" // GET: ImageList; POST /pull?ref=: a stream of PullEvents

	PathNodes      = "/api/v1/nodes"            // GET: NodeList (cluster mode)
	PathDaemonSets = "/apis/apps/v1/daemonsets" // GET: DaemonSetList; POST: apply a manifest (body)
	PathCluster    = "/api/v1/cluster"          // GET: ClusterStatus; POST /init, /join, /leave
)

// WatchEvent is one line of a watch stream, as Kubernetes' watch API sends them.
type WatchEvent struct {
	Type   string     `json:"type"` // ADDED, MODIFIED, DELETED
	Object corev1.Pod `json:"object"`
}

// Watch event types.
const (
	Added    = "ADDED"
	Modified = "MODIFIED"
	Deleted  = "DELETED"
)

// Version answers PathVersion.
type Version struct {
	Version         string `json:"version"`
	MonitorProtocol string `json:"monitorProtocol"`
	GoVersion       string `json:"goVersion"`
}

// Info answers PathInfo: what `agentctl info` prints.
type Info struct {
	ServerVersion   string `json:"serverVersion"`
	NodeName        string `json:"nodeName"`
	ManifestDir     string `json:"manifestDir"`
	Root            string `json:"root"`
	RunDir          string `json:"runDir"`
	LogDir          string `json:"logDir"`
	StorageDriver   string `json:"storageDriver"`
	CgroupParent    string `json:"cgroupParent"`
	CgroupVersion   string `json:"cgroupVersion"`
	KernelVersion   string `json:"kernelVersion"`
	MonitorProtocol string `json:"monitorProtocol"`

	// LiveRestoreEnabled is whether containers outlive agentd now;
	// LiveRestoreDisabledReason says why not when it was configured on.
	LiveRestoreEnabled        bool   `json:"liveRestoreEnabled"`
	LiveRestoreDisabledReason string `json:"liveRestoreDisabledReason,omitempty"`

	Pods              int `json:"pods"`
	Containers        int `json:"containers"`
	ContainersRunning int `json:"containersRunning"`
	ContainersExited  int `json:"containersExited"`
	Images            int `json:"images"`

	// Cluster is the node's cluster mode.
	Cluster ClusterStatus `json:"cluster"`

	// Warnings are things an operator should know (restore-sensitive settings that changed, …).
	Warnings []string `json:"warnings,omitempty"`
}

// Image is one entry of ImageList.
type Image struct {
	ID string `json:"id"`
	// Names are normalised: tagged names ("docker.io/library/busybox:1.36") and
	// repo digests ("docker.io/library/busybox@sha256:…") of pulled images.
	Names   []string `json:"names"`
	Size    int64    `json:"size"`
	Created string   `json:"created,omitempty"`
}

// PullProgress is a report on a running pull: one layer's (by digest; empty
// for the manifest and config) status and bytes (Total -1 when not known yet).
type PullProgress struct {
	Layer  string `json:"layer,omitempty"`
	Status string `json:"status"`
	Done   int64  `json:"done,omitempty"`
	Total  int64  `json:"total,omitempty"`
}

// PullResult is the image a pull brought: Digest is the repo digest of the
// manifest pulled; Duration how long the pull took.
type PullResult struct {
	Image    Image         `json:"image"`
	Digest   string        `json:"digest"`
	Duration time.Duration `json:"duration"`
}

// PullEvent is one line of the newline-delimited JSON stream that POST
// PathImages/pull answers with: progress reports, then the result or an error.
type PullEvent struct {
	Progress *PullProgress `json:"progress,omitempty"`
	Result   *PullResult   `json:"result,omitempty"`
	Error    *Status       `json:"error,omitempty"`
}

// ImageList answers GET PathImages.
type ImageList struct {
	Items []Image `json:"items"`
}

// Status is an error answer, Kubernetes-shaped.
type Status struct {
	Kind    string `json:"kind"`   // "Status"
	Status  string `json:"status"` // "Failure"
	Message string `json:"message"`
	Reason  string `json:"reason,omitempty"` // NotFound, BadRequest, …
	Code    int    `json:"code"`
}

// ClusterStatus is this node's part in a cluster (`agentctl cluster status`, `agentctl info`).
type ClusterStatus struct {
	InCluster bool   `json:"inCluster"`
	ClusterID string `json:"clusterID,omitempty"`
	NodeName  string `json:"nodeName,omitempty"`
	// EtcdMember is true when this node runs an embedded etcd member, false for a client of an external etcd.
	EtcdMember bool      `json:"etcdMember"`
	PeerURL    string    `json:"peerURL,omitempty"`
	ClientURL  string    `json:"clientURL,omitempty"`
	Endpoints  []string  `json:"endpoints,omitempty"`
	JoinedAt   time.Time `json:"joinedAt,omitzero"`
	// Connected: the node has reached the cluster's etcd since it started; Registered: and registered itself.
	Connected  bool              `json:"connected"`
	Registered bool              `json:"registered"`
	LastError  string            `json:"lastError,omitempty"`
	DaemonSets int               `json:"daemonSets"`
	NodeLabels map[string]string `json:"nodeLabels,omitempty"`
	// PodSecurity is the cluster's Pod Security level for DaemonSet pods.
	PodSecurity string `json:"podSecurity,omitempty"`
	// External: the cluster's etcd is not agentd's (cluster.etcd-endpoints).
	External bool `json:"external,omitempty"`
	// JoinURL is the cluster's join service as this node knows it; ServesJoins says this node runs it.
	JoinURL     string `json:"joinURL,omitempty"`
	ServesJoins bool   `json:"servesJoins,omitempty"`
	// AdminCredential: this node holds the cluster admin credential.
	AdminCredential bool `json:"adminCredential,omitempty"`
}

// ClusterInitRequest is POST PathCluster/init.
type ClusterInitRequest struct {
	PeerURL      string `json:"peerURL,omitempty"`
	ClientURL    string `json:"clientURL,omitempty"`
	JoinURL      string `json:"joinURL,omitempty"`
	PodSecurity  string `json:"podSecurity,omitempty"`
	CertValidity string `json:"certValidity,omitempty"`
}

// ClusterJoinRequest is POST PathCluster/join.
type ClusterJoinRequest struct {
	// URL is the cluster's join service.
	URL        string `json:"url,omitempty"`
	Token      string `json:"token,omitempty"`
	CACertHash string `json:"caCertHash,omitempty"`
	PeerURL    string `json:"peerURL,omitempty"`
	ClientURL  string `json:"clientURL,omitempty"`
	// ControlPlane joins as an etcd member; otherwise the node is only a client of the members' etcd.
	ControlPlane bool `json:"controlPlane,omitempty"`
}

// TokenRequest is POST PathCluster/tokens.
type TokenRequest struct {
	TTL          string `json:"ttl,omitempty"`
	Once         bool   `json:"once,omitempty"`
	ControlPlane bool   `json:"controlPlane,omitempty"`
	Description  string `json:"description,omitempty"`
}

// TokenCreated answers a TokenRequest: the only time the token's secret is shown.
type TokenCreated struct {
	Token        string    `json:"token"`
	Expires      time.Time `json:"expires,omitzero"`
	Once         bool      `json:"once,omitempty"`
	ControlPlane bool      `json:"controlPlane,omitempty"`
	JoinURL      string    `json:"joinURL"`
	CACertHash   string    `json:"caCertHash"`
	JoinCommand  string    `json:"joinCommand"`
}

// TokenInfo is a bootstrap token as listed: never its secret.
type TokenInfo struct {
	ID           string    `json:"id"`
	Expires      time.Time `json:"expires,omitzero"`
	Once         bool      `json:"once,omitempty"`
	ControlPlane bool      `json:"controlPlane,omitempty"`
	Description  string    `json:"description,omitempty"`
	Created      time.Time `json:"created"`
	UsedBy       string    `json:"usedBy,omitempty"`
	UsedAt       time.Time `json:"usedAt,omitzero"`
}

// CertInfo describes one certificate the node holds.
type CertInfo struct {
	Name      string    `json:"name"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// RenewAt is when agentd renews it; zero when it does not (the CA, an external etcd's files).
	RenewAt time.Time `json:"renewAt,omitzero"`
}

// ApplyResult answers an apply: the object as stored and what happened to it (created, configured, unchanged).
type ApplyResult struct {
	Result    string            `json:"result"`
	DaemonSet *appsv1.DaemonSet `json:"daemonSet"`
}
