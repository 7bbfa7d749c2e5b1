package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/internal/cgroupkill"
	"github.com/agentd-project/agentd/agent/internal/mounts"
)

// Pod sandboxes live in <run-dir>/pods/<uid>/: ns/{net,ipc,uts} (namespaces pinned by
// bind mounts, so no pause process is needed), hostname, resolv.conf (read-only in
// the containers) and shm (a tmpfs of its own, with a size limit, shared as the
// containers' /dev/shm). What the containers can write to lives on disk in the
// pod's data directory <root>/pods/<uid>/ (Sandbox.DataDir), never in run-dir, a
// tmpfs a container could fill for the whole host: hosts, each container's
// containers/<name>/termination-log, and the volumes, volumes/<name>, so emptyDir
// data survives a reboot of run-dir as it does with kubelet, until the pod is
// removed.

// sandboxDir is a pod's volatile directory.
func (r *Runtime) sandboxDir(uid string) string { return filepath.Join(r.cfg.RunDir, "pods", uid) }

// dataDir is a pod's persistent directory.
func (r *Runtime) dataDir(uid string) string { return filepath.Join(r.cfg.Root, "pods", uid) }

// volumeDir is a pod's persistent volume directory.
func (r *Runtime) volumeDir(uid string) string { return filepath.Join(r.dataDir(uid), "volumes") }

// EnsureSandbox creates what a pod's containers share, or returns what exists.
// It is idempotent: a sandbox left by an earlier agentd is reused.
func (r *Runtime) EnsureSandbox(pod *corev1.Pod) (*Sandbox, error) {
	uid := string(pod.UID)
	if err := checkPodNames(pod); err != nil {
		return nil, err
	}
	dir, data := r.sandboxDir(uid), r.dataDir(uid)
	sb := &Sandbox{
		Dir:        dir,
		DataDir:    data,
		Hosts:      filepath.Join(data, "hosts"),
		Hostname:   filepath.Join(dir, "hostname"),
		ResolvConf: filepath.Join(dir, "resolv.conf"),
		Shm:        filepath.Join(dir, "shm"),
		Volumes:    map[string]string{},
		HostIP:     r.hostIP,
	}
	if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o700); err != nil {
		return nil, err
	}
	// root's alone (the containers see their files through bind mounts).
	if err := os.MkdirAll(data, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(data, 0o700); err != nil {
		return nil, err
	}
	// The pod's cgroup with its limits, before any container is in it (the
	// monitors create their containers' cgroups beneath).
	if err := setCgroup(PodCgroup(r.cfg.CgroupParent, pod), PodResources(pod)); err != nil {
		r.RemoveSandbox(uid)
		return nil, fmt.Errorf("pod %s/%s: pod cgroup: %w", pod.Namespace, pod.Name, err)
	}
	var want []nsKind
	if !pod.Spec.HostNetwork {
		sb.NetNS = filepath.Join(dir, "ns", "net")
		sb.UTSNS = filepath.Join(dir, "ns", "uts")
		want = append(want, nsNet, nsUTS)
	}
	if !pod.Spec.HostIPC {
		sb.IPCNS = filepath.Join(dir, "ns", "ipc")
		want = append(want, nsIPC)
	}
	if err := pinNamespaces(filepath.Join(dir, "ns"), PodHostname(pod), want); err != nil {
		r.RemoveSandbox(uid)
		return nil, fmt.Errorf("pod %s/%s: namespaces: %w", pod.Namespace, pod.Name, err)
	}
	if pod.Spec.HostNetwork {
		sb.PodIP = r.hostIP
	} else {
		sb.PodIP = "127.0.0.1"
	}
	if err := writeEtcFiles(pod, sb); err != nil {
		r.RemoveSandbox(uid)
		return nil, err
	}
	if !pod.Spec.HostIPC {
		if err := mountTmpfs(sb.Shm, "mode=1777,size=65536k"); err != nil {
			r.RemoveSandbox(uid)
			return nil, fmt.Errorf("pod %s/%s: /dev/shm: %w", pod.Namespace, pod.Name, err)
		}
	} else {
		sb.Shm = ""
	}
	if err := r.prepareVolumes(pod, sb); err != nil {
		return nil, err
	}
	return sb, nil
}

// RemoveSandbox unmounts and removes a pod's sandbox and data directory (its
// volumes, /etc/hosts, termination logs). Logs stay.
func (r *Runtime) RemoveSandbox(uid string) {
	if err := checkComponent("pod UID", uid); err != nil {
		r.log.Error(err, "Refusing to remove a pod sandbox")
		return
	}
	dir := r.sandboxDir(uid)
	for _, p := range []string{"ns/net", "ns/ipc", "ns/uts", "shm"} {
		mounts.UnmountAll(filepath.Join(dir, p))
	}
	_ = os.RemoveAll(dir)
	vols := r.volumeDir(uid)
	if entries, err := os.ReadDir(vols); err == nil {
		for _, e := range entries {
			mounts.UnmountAll(filepath.Join(vols, e.Name())) // Memory-medium emptyDirs
		}
	}
	_ = os.RemoveAll(r.dataDir(uid))
	for _, cg := range podCgroups(r.cfg.CgroupParent, uid) {
		removeCgroupTree(cg)
	}
}

type nsKind struct {
	name string
	flag int
}

var (
	nsNet = nsKind{"net", unix.CLONE_NEWNET}
	nsIPC = nsKind{"ipc", unix.CLONE_NEWIPC}
	nsUTS = nsKind{"uts", unix.CLONE_NEWUTS}
)

// pinNamespaces creates the namespaces not pinned yet in dir and bind-mounts them
// there. It unshares on a thread of its own that is never returned to the Go
// scheduler, so no other goroutine ever runs in the new namespaces.
func pinNamespaces(dir, hostname string, kinds []nsKind) error {
	var todo []nsKind
	flags := 0
	for _, k := range kinds {
		if isMountPoint(filepath.Join(dir, k.name)) {
			continue
		}
		todo = append(todo, k)
		flags |= k.flag
	}
	if len(todo) == 0 {
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread ends with this goroutine
		errc <- func() error {
			if err := unix.Unshare(flags); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if flags&unix.CLONE_NEWUTS != 0 {
				if err := unix.Sethostname([]byte(hostname)); err != nil {
					return fmt.Errorf("sethostname: %w", err)
				}
			}
			if flags&unix.CLONE_NEWNET != 0 {
				if err := loopbackUp(); err != nil {
					return err
				}
			}
			tid := unix.Gettid()
			for _, k := range todo {
				target := filepath.Join(dir, k.name)
				f, err := os.OpenFile(target, os.O_CREATE|os.O_RDONLY, 0o600)
				if err != nil {
					return err
				}
				f.Close()
				src := fmt.Sprintf("/proc/%d/task/%d/ns/%s", os.Getpid(), tid, k.name)
				if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("pin %s namespace: %w", k.name, err)
				}
			}
			return nil
		}()
	}()
	return <-errc
}

// loopbackUp brings lo up in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// writeEtcFiles writes the pod's /etc/hosts, /etc/hostname and /etc/resolv.conf.
func writeEtcFiles(pod *corev1.Pod, sb *Sandbox) error {
	hostname := PodHostname(pod)
	var hosts bytes.Buffer
	hosts.WriteString("# Kubernetes-managed hosts file (agentd).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	if pod.Spec.HostNetwork {
		if h, err := os.ReadFile("/etc/hosts"); err == nil {
			hosts.Reset()
			hosts.Write(h)
		}
		if n, err := os.Hostname(); err == nil {
			hostname = n
		}
	} else {
		fmt.Fprintf(&hosts, "%s\t%s\n", sb.PodIP, hostname)
	}
	for _, ha := range pod.Spec.HostAliases {
		fmt.Fprintf(&hosts, "%s\t%s\n", ha.IP, strings.Join(ha.Hostnames, "\t"))
	}
	if err := os.WriteFile(sb.Hosts, hosts.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(sb.Hostname, []byte(hostname+"\n"), 0o644); err != nil {
		return err
	}
	resolv, err := ResolvConf(pod, readFileOr("/etc/resolv.conf", ""))
	if err != nil {
		return err
	}
	return os.WriteFile(sb.ResolvConf, []byte(resolv), 0o644)
}

// ResolvConf builds a pod's resolv.conf from the host's and the pod's dnsPolicy and
// dnsConfig. With no cluster DNS on a single node, ClusterFirst means the host's.
func ResolvConf(pod *corev1.Pod, host string) (string, error) {
	var ns, search, opts []string
	if pod.Spec.DNSPolicy != corev1.DNSNone {
		for _, line := range strings.Split(host, "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			switch f[0] {
			case "nameserver":
				// A loopback resolver of the host is unreachable from the pod's own network namespace.
				if !pod.Spec.HostNetwork && (strings.HasPrefix(f[1], "127.") || f[1] == "::1") {
					continue
				}
				ns = append(ns, f[1])
			case "search":
				search = append(search, f[1:]...)
			case "options":
				opts = append(opts, f[1:]...)
			}
		}
	}
	if c := pod.Spec.DNSConfig; c != nil {
		ns = append(ns, c.Nameservers...)
		search = append(search, c.Searches...)
		for _, o := range c.Options {
			if o.Value != nil {
				opts = append(opts, o.Name+":"+*o.Value)
			} else {
				opts = append(opts, o.Name)
			}
		}
	}
	var b strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&b, "nameserver %s\n", n)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(opts, " "))
	}
	return b.String(), nil
}

// prepareVolumes creates emptyDirs, writes downward API volumes and checks
// hostPaths as their type says.
func (r *Runtime) prepareVolumes(pod *corev1.Pod, sb *Sandbox) error {
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.EmptyDir != nil:
			dir := filepath.Join(r.volumeDir(string(pod.UID)), v.Name)
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return err
			}
			_ = os.Chmod(dir, 0o777) // as kubelet: any container user may write
			if v.EmptyDir.Medium == corev1.StorageMediumMemory {
				opts := "mode=0777"
				if v.EmptyDir.SizeLimit != nil {
					opts += fmt.Sprintf(",size=%d", v.EmptyDir.SizeLimit.Value())
				}
				if err := mountTmpfs(dir, opts); err != nil {
					return fmt.Errorf("pod %s/%s volume %s: %w", pod.Namespace, pod.Name, v.Name, err)
				}
			}
			sb.Volumes[v.Name] = dir
		case IsDownwardVolume(&v):
			dir, err := r.writeDownwardVolume(pod, &v)
			if err != nil {
				return fmt.Errorf("pod %s/%s volume %s: %w", pod.Namespace, pod.Name, v.Name, err)
			}
			sb.Volumes[v.Name] = dir
		case v.HostPath != nil:
			if err := checkHostPath(v.HostPath); err != nil {
				return fmt.Errorf("pod %s/%s volume %s: %w", pod.Namespace, pod.Name, v.Name, err)
			}
			sb.Volumes[v.Name] = v.HostPath.Path
		}
	}
	// subPaths are resolved, created and pinned by the monitor at every start of
	// the container (protocol.Mount.SubPath): the volume is the container's to change.
	return nil
}

// writeDownwardVolume writes the files of a downwardAPI or projected volume into
// <root>/pods/<uid>/volumes/<name>, a directory of root's that containers get
// read-only. A pod's values do not change while it lives (a changed manifest is
// a new pod), so writing them again, at a restart of agentd, writes the same.
func (r *Runtime) writeDownwardVolume(pod *corev1.Pod, v *corev1.Volume) (string, error) {
	files, err := DownwardVolumeFiles(pod, v, r.cfg.Settings.allocatable())
	if err != nil {
		return "", err
	}
	dir := filepath.Join(r.volumeDir(string(pod.UID)), v.Name)
	if err := os.MkdirAll(r.volumeDir(string(pod.UID)), 0o755); err != nil {
		return "", err
	}
	if err := unix.Mkdir(dir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	if err := writeVolumeFiles(dir, files); err != nil {
		return "", err
	}
	return dir, nil
}

func checkHostPath(h *corev1.HostPathVolumeSource) error {
	t := corev1.HostPathUnset
	if h.Type != nil {
		t = *h.Type
	}
	fi, err := os.Stat(h.Path)
	switch t {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if errors.Is(err, os.ErrNotExist) {
			return os.MkdirAll(h.Path, 0o755)
		}
		if err == nil && !fi.IsDir() {
			return fmt.Errorf("hostPath %s exists and is not a directory", h.Path)
		}
		return err
	case corev1.HostPathFileOrCreate:
		if errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(filepath.Dir(h.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(h.Path, os.O_CREATE|os.O_RDONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if err == nil && fi.IsDir() {
			return fmt.Errorf("hostPath %s exists and is a directory", h.Path)
		}
		return err
	}
	if err != nil {
		return fmt.Errorf("hostPath %s (type %s): %w", h.Path, t, err)
	}
	mode := fi.Mode()
	ok := map[corev1.HostPathType]bool{
		corev1.HostPathDirectory: mode.IsDir(),
		corev1.HostPathFile:      mode.IsRegular(),
		corev1.HostPathSocket:    mode&os.ModeSocket != 0,
		corev1.HostPathCharDev:   mode&os.ModeCharDevice != 0,
		corev1.HostPathBlockDev:  mode&os.ModeDevice != 0 && mode&os.ModeCharDevice == 0,
	}[t]
	if !ok {
		return fmt.Errorf("hostPath %s is not a %s", h.Path, t)
	}
	return nil
}

func mountTmpfs(dir, opts string) error {
	if isMountPoint(dir) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts)
}

// isMountPoint reports whether path is a mount point (a pinned namespace file or a tmpfs).
func isMountPoint(path string) bool {
	var st, parent unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	if err := unix.Lstat(filepath.Dir(path), &parent); err != nil {
		return false
	}
	if st.Dev != parent.Dev {
		return true
	}
	// A bind mount of an nsfs file has the nsfs device; a same-device bind mount is
	// found in mountinfo.
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func readFileOr(path, def string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return def
	}
	return string(b)
}

// removeCgroupTree removes an empty cgroup and its empty children in every hierarchy.
func removeCgroupTree(path string) {
	if checkCgroup(path) != nil {
		return
	}
	for _, root := range cgroupRoots() {
		dir := filepath.Join(root, path)
		removeEmptyTree(dir)
	}
}

// cgroupRoots are the mounted hierarchies: cgroup v2's, or v1's with the hybrid
// layout's unified one.
func cgroupRoots() []string { return cgroupkill.Hierarchies() }

func removeEmptyTree(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.IsDir() {
			removeEmptyTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = unix.Rmdir(dir)
}
