package runtime

import (
	"fmt"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
	"github.com/agentd-project/agentd/agent/state"
	"github.com/agentd-project/agentd/spec"
)

// DefaultCapabilities is Docker's (and containerd's, CRI-O's) default set for a
// container that is not privileged.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Image is what the runtime needs of an image.
type Image struct {
	Name       string
	ID         string
	Layers     []string // unpacked layer dirs, bottom first
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	User       string
}

// Sandbox is what a pod's containers share: pinned namespaces, /etc files, /dev/shm
// and the pod's volumes.
type Sandbox struct {
	Dir string // <run-dir>/pods/<uid>: what containers cannot write to
	// DataDir (<root>/pods/<uid>, on disk) holds the pod's files its containers
	// write to: /etc/hosts, the termination logs. Empty in the record of a pod
	// an older agentd set up: those stayed in Dir.
	DataDir    string
	NetNS      string // pinned namespace files; "" with hostNetwork etc.
	IPCNS      string
	UTSNS      string
	Hosts      string // the pod's /etc/hosts
	Hostname   string // the pod's /etc/hostname
	ResolvConf string
	Shm        string            // tmpfs shared as /dev/shm
	Volumes    map[string]string // volume name → host directory
	PodIP      string
	HostIP     string
}

// Settings are the agent's settings that shape a container's config.
type Settings struct {
	// Root is agentd's root (on disk): containers' runs are kept under
	// <Root>/containers/<id>/runs. "" keeps them in the monitor's state directory.
	Root          string
	RunDir        string
	LogDir        string
	CgroupParent  string
	StorageDriver string
	NodeName      string
	LogMaxSize    int64
	LogMaxFiles   int
	BackoffBase   time.Duration // for tests; 0 = kubelet's 10 s
	BackoffMax    time.Duration
	// SeccompDefault gives RuntimeDefault to containers that name no seccomp profile.
	SeccompDefault bool
	// PidsLimit is every container's pids.max; 0 is none.
	PidsLimit int64
	// NodeMemory is the node's memory in bytes, for Burstable containers' OOM
	// score and the downward API's limits.memory of a container without one.
	NodeMemory int64
	// NodeMilliCPU and NodeEphemeralStorage (bytes, of the filesystem holding
	// Root) are the downward API's limits of a container that sets none.
	NodeMilliCPU         int64
	NodeEphemeralStorage int64
}

// MonitorID names a container's monitor: one per pod UID and container name.
func MonitorID(podUID, container string) string { return podUID + "_" + container }

// ContainerConfig builds the monitor's config for one container of a pod. It is
// pure: everything it needs is passed in.
func ContainerConfig(pod *corev1.Pod, c *corev1.Container, isInit bool, img *Image, sb *Sandbox, s *Settings) (*protocol.ContainerConfig, error) {
	uid := string(pod.UID)
	if err := checkPodNames(pod); err != nil {
		return nil, err
	}
	for what, name := range map[string]string{"container name": c.Name, "pod log directory": pod.Namespace + "_" + pod.Name + "_" + uid} {
		if err := checkComponent(what, name); err != nil {
			return nil, err
		}
	}
	cfg := &protocol.ContainerConfig{
		ID:        MonitorID(uid, c.Name),
		Name:      c.Name,
		Pod:       protocol.PodRef{Namespace: pod.Namespace, Name: pod.Name, UID: uid},
		Image:     protocol.ImageRef{Name: c.Image, ID: img.ID},
		Rootfs:    protocol.Rootfs{Layers: img.Layers, Driver: s.StorageDriver},
		StateRoot: filepath.Join(s.RunDir, "libcontainer"),
		Log: protocol.LogConfig{
			Dir:      filepath.Join(s.LogDir, pod.Namespace+"_"+pod.Name+"_"+uid, c.Name),
			Root:     s.LogDir,
			MaxSize:  s.LogMaxSize,
			MaxFiles: s.LogMaxFiles,
		},
		Restart: protocol.Restart{Policy: RestartPolicy(pod, c, isInit), BackoffBase: s.BackoffBase, BackoffMax: s.BackoffMax},
		Stop:    protocol.StopConfig{GracePeriod: spec.TerminationGracePeriod(pod)},
		Termination: protocol.Termination{
			MessagePath:   c.TerminationMessagePath,
			FallbackToLog: c.TerminationMessagePolicy == corev1.TerminationMessageFallbackToLogsOnError,
			HostPath:      TerminationLogPath(sb, c),
		},
	}

	env, err := Env(pod, c, img, sb, s)
	if err != nil {
		return nil, err
	}
	args, err := Args(c, img, env)
	if err != nil {
		return nil, err
	}
	cfg.Process = protocol.Process{Args: args, Env: env, Cwd: firstNonEmpty(c.WorkingDir, img.WorkingDir, "/"),
		Stdin: c.Stdin, StdinOnce: c.Stdin && c.StdinOnce, Tty: c.TTY}
	if err := setUser(&cfg.Process, pod, c, img); err != nil {
		return nil, err
	}

	sc := c.SecurityContext
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		cfg.Privileged = true
	}
	cfg.Process.Capabilities = Capabilities(sc)
	if sc != nil && sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		cfg.Process.NoNewPrivileges = true
	}
	if sc != nil && sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		cfg.Rootfs.ReadOnly = true
	}
	cfg.Seccomp = SeccompProfile(pod, c, s.SeccompDefault)
	adj := OOMScoreAdj(pod, c, s.NodeMemory)
	cfg.Process.OOMScoreAdj = &adj

	cfg.Namespaces, cfg.Hostname = namespaces(pod, sb)
	cfg.Mounts, err = Mounts(pod, c, sb)
	if err != nil {
		return nil, err
	}
	if s.Root != "" {
		cfg.Rootfs.RunsDir = ContainerRunsDir(s.Root, cfg.ID)
	}
	cfg.Cgroup = Cgroup(c, s.CgroupParent, pod)
	cfg.Cgroup.PidsLimit = s.PidsLimit
	return cfg, nil
}

// SeccompProfile is the seccomp profile a container runs with: none for a
// privileged container (as Docker and containerd do), else the container's
// securityContext.seccompProfile, else the pod's, else RuntimeDefault when
// seccomp-default is on (kubelet's --seccomp-default, Docker's behaviour) and
// Unconfined when it is off.
func SeccompProfile(pod *corev1.Pod, c *corev1.Container, seccompDefault bool) string {
	sc, psc := c.SecurityContext, pod.Spec.SecurityContext
	switch {
	case sc != nil && sc.Privileged != nil && *sc.Privileged:
		return string(corev1.SeccompProfileTypeUnconfined)
	case sc != nil && sc.SeccompProfile != nil:
		return string(sc.SeccompProfile.Type)
	case psc != nil && psc.SeccompProfile != nil:
		return string(psc.SeccompProfile.Type)
	case seccompDefault:
		return string(corev1.SeccompProfileTypeRuntimeDefault)
	}
	return string(corev1.SeccompProfileTypeUnconfined)
}

// OOM score adjustments, kubelet's (pkg/kubelet/qos/policy.go).
const (
	GuaranteedOOMScoreAdj = -997
	BestEffortOOMScoreAdj = 1000
)

// OOMScoreAdj is the oom_score_adj kubelet gives a container: -997 in a
// Guaranteed pod (and in a system-node-critical one), 1000 in a BestEffort pod,
// and in a Burstable pod 1000 less the container's share of the node's memory
// in thousandths (a container requesting 10% gets 900), kept within [3, 999] so
// that Burstable containers rank between the other two classes.
func OOMScoreAdj(pod *corev1.Pod, c *corev1.Container, nodeMemory int64) int {
	if pod.Spec.PriorityClassName == "system-node-critical" {
		return GuaranteedOOMScoreAdj
	}
	switch state.QOSClass(pod) {
	case corev1.PodQOSGuaranteed:
		return GuaranteedOOMScoreAdj
	case corev1.PodQOSBestEffort:
		return BestEffortOOMScoreAdj
	}
	adj := int64(BestEffortOOMScoreAdj)
	if nodeMemory > 0 {
		adj -= 1000 * c.Resources.Requests.Memory().Value() / nodeMemory
	}
	return min(max(int(adj), 1000+GuaranteedOOMScoreAdj), BestEffortOOMScoreAdj-1)
}

// RestartPolicy is a container's own restart policy: its pod's, except that an
// init container of a pod that restarts Always restarts OnFailure, and a
// sidecar (an init container with restartPolicy Always) restarts Always
// whatever its pod's policy.
func RestartPolicy(pod *corev1.Pod, c *corev1.Container, isInit bool) string {
	if isInit && spec.IsSidecar(c) {
		return protocol.RestartAlways
	}
	p := string(pod.Spec.RestartPolicy)
	if isInit && p == protocol.RestartAlways {
		return protocol.RestartOnFailure // kubelet reruns a failed init container; a succeeded one stays done
	}
	return p
}

func namespaces(pod *corev1.Pod, sb *Sandbox) (protocol.Namespaces, string) {
	ns := protocol.Namespaces{Net: sb.NetNS, IPC: sb.IPCNS, UTS: sb.UTSNS}
	hostname := PodHostname(pod)
	if pod.Spec.HostNetwork {
		ns.Net, ns.UTS, hostname = protocol.NamespaceHost, protocol.NamespaceHost, ""
	}
	if pod.Spec.HostIPC {
		ns.IPC = protocol.NamespaceHost
	}
	if pod.Spec.HostPID {
		ns.PID = protocol.NamespaceHost
	}
	return ns, hostname
}

// PodHostname is the pod's hostname: spec.hostname or its name, at most 63 characters.
func PodHostname(pod *corev1.Pod) string {
	h := firstNonEmpty(pod.Spec.Hostname, pod.Name)
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// Capabilities is Docker's default set with the container's add and drop applied.
func Capabilities(sc *corev1.SecurityContext) []string {
	set := map[string]bool{}
	for _, c := range DefaultCapabilities {
		set[c] = true
	}
	if sc != nil && sc.Capabilities != nil {
		for _, d := range sc.Capabilities.Drop {
			if strings.EqualFold(string(d), "ALL") {
				set = map[string]bool{}
				continue
			}
			delete(set, spec.CapabilityName(string(d)))
		}
		for _, a := range sc.Capabilities.Add {
			set[spec.CapabilityName(string(a))] = true
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// Cgroup places a container in its pod's cgroup (PodCgroup, in the pod's QoS
// tier) with its limits and kubelet's cpu.shares for its request, and its
// monitor under <parent>/monitors/<uid>_<name>, a sibling tree.
func Cgroup(c *corev1.Container, parent string, pod *corev1.Pod) protocol.Cgroup {
	cg := protocol.Cgroup{
		Path:        filepath.Join(PodCgroup(parent, pod), c.Name),
		MonitorPath: monitorCgroup(parent, string(pod.UID), c.Name),
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		cg.MemoryLimit = q.Value()
	}
	// Without a CPU request a container gets kubelet's minimum, 2 shares
	// (cpu.weight 1 on cgroup v2), not the kernel's default of 1024: it yields
	// to every container that asked for CPU, as under kubelet.
	cg.CPUShares = MilliCPUToShares(c.Resources.Requests.Cpu().MilliValue())
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		cg.CPUPeriod = 100000
		cg.CPUQuota = MilliCPUToQuota(q.MilliValue(), int64(cg.CPUPeriod))
	}
	return cg
}

// monitorCgroup is a container's monitor's cgroup.
func monitorCgroup(parent, podUID, name string) string {
	return filepath.Join(parent, "monitors", MonitorID(podUID, name))
}

// MilliCPUToShares is kubelet's conversion of a CPU request to cpu.shares.
func MilliCPUToShares(milli int64) uint64 {
	const minShares, maxShares = 2, 262144
	if milli == 0 {
		return minShares
	}
	shares := milli * 1024 / 1000
	switch {
	case shares < minShares:
		return minShares
	case shares > maxShares:
		return maxShares
	}
	return uint64(shares)
}

// MilliCPUToQuota is kubelet's conversion of a CPU limit to a CFS quota.
func MilliCPUToQuota(milli, period int64) int64 {
	if milli == 0 {
		return 0
	}
	quota := milli * period / 1000
	if quota < 1000 {
		quota = 1000
	}
	return quota
}

// Args is the process's argv as Kubernetes builds it from the image and the
// container: command replaces the Entrypoint (and drops the image's Cmd), args
// replaces Cmd; $(VAR) references are expanded from the container's environment.
func Args(c *corev1.Container, img *Image, env []string) ([]string, error) {
	var argv []string
	switch {
	case len(c.Command) > 0:
		argv = append(append(argv, c.Command...), c.Args...)
	case len(c.Args) > 0:
		argv = append(append(argv, img.Entrypoint...), c.Args...)
	default:
		argv = append(append(argv, img.Entrypoint...), img.Cmd...)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("container %q: no command: the image %s has no Entrypoint or Cmd and the pod gives none", c.Name, img.Name)
	}
	vars := envMap(env)
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = Expand(a, vars)
	}
	return out, nil
}

// Env merges the image's environment with the container's (the container wins),
// resolving fieldRefs, resourceFieldRefs and $(VAR) references as Kubernetes does.
func Env(pod *corev1.Pod, c *corev1.Container, img *Image, sb *Sandbox, s *Settings) ([]string, error) {
	var order []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, kv := range img.Env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	if !pod.Spec.HostNetwork {
		set("HOSTNAME", PodHostname(pod))
	}
	// Only the container's own earlier variables are visible to $(VAR), as in Kubernetes.
	defined := map[string]string{}
	for _, e := range c.Env {
		v := e.Value
		var err error
		switch from := e.ValueFrom; {
		case from != nil && from.FieldRef != nil:
			v, err = EnvFieldValue(pod, from.FieldRef.FieldPath, sb, s.NodeName)
		case from != nil && from.ResourceFieldRef != nil:
			v, err = ResourceFieldValue(pod, c.Name, from.ResourceFieldRef, s.allocatable())
		case from != nil:
			err = fmt.Errorf("valueFrom names no source agentd has")
		default:
			v = Expand(v, defined)
		}
		if err != nil {
			return nil, fmt.Errorf("container %q env %s: %w", c.Name, e.Name, err)
		}
		defined[e.Name] = v
		set(e.Name, v)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out, nil
}

func envMap(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

var varRef = regexp.MustCompile(`\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)`)

// Expand replaces $(VAR) with its value when VAR is defined, leaves it as written
// otherwise, and turns $$ into $, as Kubernetes' expansion does.
func Expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	return varRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		if v, ok := vars[m[2:len(m)-1]]; ok {
			return v
		}
		return m
	})
}

// setUser says which user a container runs as: securityContext (container, then
// pod) over the image's USER. Names, and the primary group of a user given without
// one, are resolved by the monitor inside the container's rootfs at every start
// (protocol.Process.User); agentd never reads the image's files for them. The numbers
// known here are set too, for runAsNonRoot and for older monitors.
func setUser(p *protocol.Process, pod *corev1.Pod, c *corev1.Container, img *Image) error {
	var uid, gid *int64
	nonRoot := false
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
		nonRoot = psc.RunAsNonRoot != nil && *psc.RunAsNonRoot
		for _, g := range psc.SupplementalGroups {
			p.AdditionalGIDs = append(p.AdditionalGIDs, uint32(g))
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
		if sc.RunAsNonRoot != nil {
			nonRoot = *sc.RunAsNonRoot
		}
	}
	user, group, _ := strings.Cut(img.User, ":")
	if uid != nil {
		user = strconv.FormatInt(*uid, 10)
	}
	if gid != nil {
		group = strconv.FormatInt(*gid, 10)
	}
	numericUID, uidErr := strconv.ParseUint(user, 10, 32)
	if user != "" && uidErr == nil {
		p.UID = uint32(numericUID)
	}
	if n, err := strconv.ParseUint(group, 10, 32); err == nil {
		p.GID = uint32(n)
	}
	if user != "" || group != "" {
		p.User = user
		if group != "" {
			p.User += ":" + group
		}
	}
	if nonRoot {
		switch {
		case user != "" && uidErr != nil:
			// kubelet's rule: a name cannot be verified before the container runs.
			return fmt.Errorf("container %q has runAsNonRoot and its image has the non-numeric user %q, which cannot be verified as non-root: set securityContext.runAsUser", c.Name, user)
		case p.UID == 0:
			return fmt.Errorf("container %q has runAsNonRoot and its image will run as root: set securityContext.runAsUser", c.Name)
		}
	}
	return nil
}

// Mounts are the container's mounts: the pod's /etc files and /dev/shm, then its volumes.
func Mounts(pod *corev1.Pod, c *corev1.Container, sb *Sandbox) ([]protocol.Mount, error) {
	var out []protocol.Mount
	add := func(src, dst string, ro bool) {
		opts := []string{"rbind", "rprivate"}
		if ro {
			opts = append(opts, "ro")
		}
		out = append(out, protocol.Mount{Source: src, Destination: dst, Type: "bind", Options: opts})
	}
	mounted := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounted[filepath.Clean(m.MountPath)] = true
	}
	// The pod's containers share these files: /etc/hostname and /etc/resolv.conf are
	// read-only so that one container cannot redirect its siblings' DNS; /etc/hosts
	// stays writable, as kubelet mounts it.
	for _, f := range []struct {
		src, dst string
		ro       bool
	}{{sb.Hosts, "/etc/hosts", false}, {sb.Hostname, "/etc/hostname", true}, {sb.ResolvConf, "/etc/resolv.conf", true}} {
		if f.src != "" && !mounted[f.dst] {
			add(f.src, f.dst, f.ro)
		}
	}
	if sb.Shm != "" && !mounted["/dev/shm"] {
		add(sb.Shm, "/dev/shm", false)
	}
	downward := map[string]bool{}
	for i := range pod.Spec.Volumes {
		downward[pod.Spec.Volumes[i].Name] = IsDownwardVolume(&pod.Spec.Volumes[i])
	}
	for _, m := range c.VolumeMounts {
		src, ok := sb.Volumes[m.Name]
		if !ok {
			return nil, fmt.Errorf("container %q mounts volume %q, which the pod does not prepare", c.Name, m.Name)
		}
		// agentd writes a downward API volume's files: always read-only in the
		// container, as kubelet mounts them, so a container cannot plant links
		// that agentd would follow.
		add(src, m.MountPath, m.ReadOnly || downward[m.Name])
		if m.SubPath != "" {
			// Resolved by the monitor beneath src at every start, never joined here.
			out[len(out)-1].SubPath = m.SubPath
		}
	}
	// Last, as kubelet does, so a path inside a volume still gets the file.
	if host := TerminationLogPath(sb, c); host != "" && !mounted[filepath.Clean(c.TerminationMessagePath)] {
		add(host, c.TerminationMessagePath, false)
	}
	return out, nil
}

// TerminationLogPath is the host file bind-mounted at a container's
// terminationMessagePath, in the pod's data directory on disk (kubelet keeps it
// under pods/<uid>/containers/<name>/), or "" when the container has no such
// path. A pod an older agentd set up has no data directory: its sandbox's.
func TerminationLogPath(sb *Sandbox, c *corev1.Container) string {
	dir := firstNonEmpty(sb.DataDir, sb.Dir)
	if c.TerminationMessagePath == "" || dir == "" {
		return ""
	}
	return filepath.Join(dir, "containers", c.Name, "termination-log")
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
