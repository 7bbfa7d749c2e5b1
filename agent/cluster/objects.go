package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/cluster/admission"
	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/cluster/store"
	"github.com/agentd-project/agentd/spec"
)

// Nodes lists the cluster's nodes as Kubernetes Nodes: labels, creationTimestamp (first registration), the Ready
// condition (True while the node's lease lives, Unknown after) and nodeInfo.kubeletVersion (the agent's version).
func (n *Node) Nodes(ctx context.Context) ([]corev1.Node, error) {
	c, err := n.Client()
	if err != nil {
		return nil, err
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]corev1.Node, 0, len(nodes))
	for _, sn := range nodes {
		cond := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "AgentReady",
			Message: "agentd is posting ready status", LastHeartbeatTime: metav1.NewTime(sn.Heartbeat)}
		if !sn.Ready {
			cond.Status, cond.Reason, cond.Message = corev1.ConditionUnknown, "NodeStatusUnknown", "agentd stopped renewing the node's lease"
		}
		out = append(out, corev1.Node{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
			ObjectMeta: metav1.ObjectMeta{Name: sn.Name, Labels: maps.Clone(sn.Labels), CreationTimestamp: metav1.NewTime(sn.Registered)},
			Status: corev1.NodeStatus{
				Conditions: []corev1.NodeCondition{cond},
				NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: sn.Version, OperatingSystem: sn.Labels["kubernetes.io/os"], Architecture: sn.Labels["kubernetes.io/arch"]},
			},
		})
	}
	return out, nil
}

// Apply creates or replaces the DaemonSet of a manifest, validated as strictly as a pod's (a *spec.FieldErrors names
// every wrong field). It reports "created", "configured" or "unchanged".
func (n *Node) Apply(ctx context.Context, manifest []byte) (*api.ApplyResult, error) {
	var tm metav1.TypeMeta
	if yaml.Unmarshal(manifest, &tm) == nil && tm.Kind == "Pod" {
		return nil, fmt.Errorf("%w: agentctl apply takes apps/v1 DaemonSets, which run on every matching node of the cluster; a Pod for this node alone goes into agentd's manifest directory", spec.ErrInvalid)
	}
	ds, err := daemonset.Decode(manifest)
	if err != nil {
		return nil, err
	}
	c, err := n.admin(ctx)
	if err != nil {
		return nil, err
	}
	level := admission.Default
	switch cfg, err := c.ClusterConfig(ctx); {
	case err == nil:
		if level, err = admission.ParseLevel(cfg.PodSecurity); err != nil {
			return nil, err
		}
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	if v := admission.Check(level, &ds.Spec.Template.ObjectMeta, &ds.Spec.Template.Spec, "spec.template."); len(v) > 0 {
		return nil, fmt.Errorf("daemonset %s/%s: %w", ds.Namespace, ds.Name, admission.Error(level, v))
	}
	old, err := c.GetDaemonSet(ctx, ds.Namespace, ds.Name)
	switch {
	case errors.Is(err, store.ErrNotFound):
		old = nil
	case err != nil:
		return nil, err
	}
	if old != nil && apiequality.Semantic.DeepEqual(old.Spec, ds.Spec) &&
		apiequality.Semantic.DeepEqual(old.Labels, ds.Labels) && apiequality.Semantic.DeepEqual(old.Annotations, ds.Annotations) {
		return &api.ApplyResult{Result: "unchanged", DaemonSet: old}, nil
	}
	stored, err := c.PutDaemonSet(ctx, ds)
	if err != nil {
		return nil, err
	}
	res := "configured"
	if old == nil {
		res = "created"
	}
	return &api.ApplyResult{Result: res, DaemonSet: stored}, nil
}

// DaemonSets lists the cluster's DaemonSets with their status computed from the nodes' reports.
func (n *Node) DaemonSets(ctx context.Context) ([]appsv1.DaemonSet, error) {
	c, err := n.Client()
	if err != nil {
		return nil, err
	}
	list, _, err := c.ListDaemonSets(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	for i := range list {
		ds := &list[i]
		pods, err := c.DSPods(ctx, ds.Namespace, ds.Name)
		if err != nil {
			return nil, err
		}
		byNode := map[string]store.DSPodStatus{}
		for _, p := range pods {
			byNode[p.Node] = p
		}
		reports := make([]daemonset.NodeReport, 0, len(nodes))
		for _, sn := range nodes {
			p, ok := byNode[sn.Name]
			reports = append(reports, daemonset.NodeReport{Node: sn.Name, Matches: daemonset.Matches(ds, sn.Labels),
				Running: ok && p.Running, Ready: ok && p.Ready, TemplateHash: p.TemplateHash})
		}
		ds.Status = daemonset.Status(ds, reports)
	}
	return list, nil
}

// DeleteDaemonSet deletes a DaemonSet; every node stops its pod.
func (n *Node) DeleteDaemonSet(ctx context.Context, namespace, name string) error {
	c, err := n.admin(ctx)
	if err != nil {
		return err
	}
	if err := c.DeleteDaemonSet(ctx, namespace, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("daemonsets.apps %q not found: %w", name, err)
		}
		return err
	}
	return nil
}

// DeleteNode removes a node that is gone for good: its record (and lease), its etcd member when it had one, and its
// etcd user, so that its certificate, valid until it expires, grants nothing more. A node that is Ready is refused:
// it would register again; it leaves with `agentctl cluster leave` instead. force removes a Ready node all the same
// (one whose credentials are lost or misused): its user goes first, so that it can do nothing more, not even keep
// its liveness key.
func (n *Node) DeleteNode(ctx context.Context, name string, force bool) error {
	c, err := n.admin(ctx)
	if err != nil {
		return err
	}
	if name == n.cfg.NodeName {
		return refused(fmt.Sprintf("node %q is this node: run `agentctl cluster leave`", name))
	}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return err
	}
	for _, sn := range nodes {
		if sn.Name == name && sn.Ready && !force {
			return refused(fmt.Sprintf("node %q is Ready (its agent renews its lease): run `agentctl cluster leave` on it instead, or `agentctl delete node %s --force` to cut it off", name, name))
		}
	}
	userErr := c.RemoveNodeUser(ctx, name) // first: from here on its certificates grant nothing
	if userErr != nil {
		return userErr
	}
	recErr := c.RemoveNode(ctx, name)
	if recErr != nil && !errors.Is(recErr, store.ErrNotFound) {
		return recErr
	}
	memErr := c.RemoveMember(ctx, name)
	if memErr != nil && !errors.Is(memErr, store.ErrNotFound) {
		return memErr
	}
	if recErr != nil && memErr != nil {
		return fmt.Errorf("nodes %q not found: %w", name, store.ErrNotFound)
	}
	return nil
}

// ErrRefused: the request contradicts the cluster's state (errors.Is).
var ErrRefused = errors.New("refused")

type refused string

func (r refused) Error() string        { return string(r) }
func (r refused) Is(target error) bool { return target == ErrRefused }
