package runtime

import (
	"fmt"
	"path/filepath"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"

	"github.com/agentd-project/agentd/agent/state"
)

// Pods' cgroups are laid out as kubelet lays them out with --cgroups-per-qos
// (pkg/kubelet/cm/qos_container_manager_linux.go), cgroup-parent standing for
// kubelet's kubepods:
//
//	<parent>/pod-<uid>/<container>             Guaranteed pods
//	<parent>/burstable/pod-<uid>/<container>   Burstable pods
//	<parent>/besteffort/pod-<uid>/<container>  BestEffort pods
//	<parent>/monitors/<uid>_<container>        every container's monitor
//
// The besteffort tier has 2 CPU shares, the burstable tier the sum of its pods'
// CPU requests, so under contention a BestEffort pod yields to every other
// pod, and a Burstable pod to the Guaranteed ones beside its tier. Each pod's
// cgroup carries the pod's own limits (ResourceConfigForPod). Pods of an agentd
// before the tiers all have the Guaranteed layout, so their records stay valid.
const (
	burstableTier  = "burstable"
	bestEffortTier = "besteffort"
)

// qosTiers are the directories under cgroup-parent that hold pod cgroups, "" the
// parent itself (Guaranteed pods).
var qosTiers = []string{"", burstableTier, bestEffortTier}

func qosTier(q corev1.PodQOSClass) string {
	switch q {
	case corev1.PodQOSBurstable:
		return burstableTier
	case corev1.PodQOSBestEffort:
		return bestEffortTier
	}
	return ""
}

// PodCgroup is the cgroup of a pod's containers, in its QoS class's tier.
func PodCgroup(parent string, pod *corev1.Pod) string {
	return filepath.Join(parent, qosTier(state.QOSClass(pod)), "pod-"+string(pod.UID))
}

// podCgroups are the places a pod's cgroup may be, one per tier: where a
// removal looks, and what a record may name.
func podCgroups(parent, uid string) []string {
	out := make([]string, 0, len(qosTiers))
	for _, t := range qosTiers {
		out = append(out, filepath.Join(parent, t, "pod-"+uid))
	}
	return out
}

// PodResources is kubelet's ResourceConfigForPod: the pod's CPU requests as
// cpu.shares (2 for a BestEffort pod), and when every container sets the limit
// (as in every Guaranteed pod), the sum of its CPU limits as a CFS quota and of
// its memory limits as its memory limit. Init containers count as
// kubelet counts them (the largest init container against the sum of the
// others, sidecars included).
func PodResources(pod *corev1.Pod) *cgroups.Resources {
	qos := state.QOSClass(pod)
	res := &cgroups.Resources{SkipDevices: true}
	if qos == corev1.PodQOSBestEffort {
		res.CpuShares = MilliCPUToShares(0)
		return res
	}
	reqs := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	limits := resourcehelper.PodLimits(pod, resourcehelper.PodResourcesOptions{})
	res.CpuShares = MilliCPUToShares(reqs.Cpu().MilliValue())
	cpuDeclared, memDeclared := true, true
	for _, c := range append(append([]corev1.Container(nil), pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Resources.Limits.Cpu().IsZero() {
			cpuDeclared = false
		}
		if c.Resources.Limits.Memory().IsZero() {
			memDeclared = false
		}
	}
	if cpuDeclared {
		res.CpuPeriod = 100000
		res.CpuQuota = MilliCPUToQuota(limits.Cpu().MilliValue(), int64(res.CpuPeriod))
	}
	if memDeclared {
		res.Memory = limits.Memory().Value()
	}
	return res
}

// QOSTierShares are the cpu.shares of the burstable and besteffort tiers given
// every pod on the node, as kubelet's qosContainerManager sets them.
func QOSTierShares(pods []*corev1.Pod) (burstable, bestEffort uint64) {
	var milli int64
	for _, p := range pods {
		if state.QOSClass(p) == corev1.PodQOSBurstable {
			reqs := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
			milli += reqs.Cpu().MilliValue()
		}
	}
	return MilliCPUToShares(milli), MilliCPUToShares(0)
}

// UpdateQOSCgroups creates the QoS tiers and sets their cpu.shares for pods,
// every pod the node runs or is about to run.
func (r *Runtime) UpdateQOSCgroups(pods []*corev1.Pod) error {
	burstable, bestEffort := QOSTierShares(pods)
	r.qosMu.Lock()
	defer r.qosMu.Unlock()
	for tier, shares := range map[string]uint64{burstableTier: burstable, bestEffortTier: bestEffort} {
		if err := setCgroup(filepath.Join(r.cfg.CgroupParent, tier), &cgroups.Resources{SkipDevices: true, CpuShares: shares}); err != nil {
			return fmt.Errorf("QoS cgroup %s: %w", tier, err)
		}
	}
	return nil
}

// setCgroup creates the cgroup path in every hierarchy and sets res on it, as
// kubelet's cgroup manager does (libcontainer's manager: Apply with no process,
// then Set).
func setCgroup(path string, res *cgroups.Resources) error {
	if err := checkCgroup(path); err != nil {
		return err
	}
	res = withCPUWeight(res, cgroups.IsCgroup2UnifiedMode())
	m, err := manager.New(&cgroups.Cgroup{Path: path, Resources: res})
	if err != nil {
		return err
	}
	if err := m.Apply(-1); err != nil {
		return err
	}
	return m.Set(res)
}

// withCPUWeight returns res with cpu.weight set from its cpu.shares on cgroup v2
// (v2: the unified hierarchy), by runc's conversion (shares 2 -> weight 1, 1024 ->
// 100, 262144 -> 10000), as runc's specconv does for a container. libcontainer's
// cgroup v2 manager writes cpu.weight only and leaves the conversion to its
// caller: without this a pod's and a QoS tier's cgroup kept the default weight
// of 100 whatever the requests. A weight already set is kept; res is not changed.
func withCPUWeight(res *cgroups.Resources, v2 bool) *cgroups.Resources {
	if !v2 || res.CpuShares == 0 || res.CpuWeight != 0 {
		return res
	}
	out := *res
	out.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(res.CpuShares)
	return &out
}
