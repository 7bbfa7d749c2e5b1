package monitor

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/libcontainer/utils"
	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/image/layerfs"
	"github.com/agentd-project/agentd/agent/internal/cgroupkill"
	"github.com/agentd-project/agentd/agent/internal/crashpoint"
	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// started is a running container: its init's pid and the read ends of its output
// pipes, or its terminal's master (Process.Tty), and its stdin pipe's write end
// (Process.Stdin without Tty).
type started struct {
	containerID string
	pid         int
	stdout      *os.File
	stderr      *os.File
	console     *os.File
	stdin       *os.File
	user        *protocol.RunUser
}

// newContainerID returns 64 hex characters, as Docker and CRI runtimes name containers.
func newContainerID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

// isContainerID reports whether id is one newContainerID made: a name that is safe
// as a path component under the state root.
func isContainerID(id string) bool {
	if len(id) != 64 {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// runDir is where a run's rootfs lives (protocol.RunDir): under the config's
// Rootfs.RunsDir, or in the state directory for a config of an older agentd.
func runDir(cfg *protocol.ContainerConfig, stateDir, containerID string) (string, error) {
	return protocol.RunDir(cfg, stateDir, containerID)
}

// startContainer creates and starts one run of the container: a fresh writable layer
// over the image's layers, then libcontainer's Create + Run with pipes for stdout
// and stderr. On error everything it made is removed again.
func startContainer(cfg *protocol.ContainerConfig, stateDir string, joined func() error) (_ *started, retErr error) {
	id := newContainerID()
	dir, err := runDir(cfg, stateDir, id)
	if err != nil {
		return nil, err
	}
	// The runs directory is agentd's to create (root's alone); made here too for
	// the state directory's, and in case it went.
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("container %s: runs directory: %w", cfg.ID, err)
	}
	defer func() {
		if retErr != nil {
			_ = unmountRun(dir)
		}
	}()
	rootfs, err := mountRootfs(cfg, dir)
	if err != nil {
		return nil, err
	}

	if err := protocol.PrepareTerminationLog(cfg.Termination.HostPath, true); err != nil {
		return nil, err
	}
	mounts, err := bindSubPaths(cfg.Mounts, dir)
	if err != nil {
		return nil, err
	}
	crashpoint.Hit("monitor-rootfs-mounted")
	ru, err := resolveUser(&cfg.Process, rootfs)
	if err != nil {
		return nil, err
	}
	withPins := *cfg
	withPins.Mounts = mounts
	withPins.Process.UID, withPins.Process.GID, withPins.Process.AdditionalGIDs = ru.UID, ru.GID, ru.AdditionalGIDs
	spec, err := BuildSpec(&withPins, rootfs)
	if err != nil {
		return nil, err
	}
	if want := spec.Process.OOMScoreAdj; want != nil {
		adj := containerOOMScoreAdj(*want)
		spec.Process.OOMScoreAdj = &adj
	}
	// Each container gets its own session keyring (runc's default, named after the
	// container; exec'd processes join it), never the monitor's.
	lcfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec})
	if err != nil {
		return nil, fmt.Errorf("container config: %w", err)
	}
	if joined != nil {
		if err := joined(); err != nil {
			return nil, err
		}
	}
	c, err := libcontainer.Create(cfg.StateRoot, id, lcfg)
	if err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	defer func() {
		if retErr != nil {
			_ = c.Destroy()
		}
	}()
	crashpoint.Hit("monitor-container-created")

	nnp := cfg.Process.NoNewPrivileges
	p := &libcontainer.Process{
		Args:             cfg.Process.Args,
		Env:              processEnv(cfg.Process.Env, cfg.Process.Tty),
		Cwd:              spec.Process.Cwd,
		UID:              int(ru.UID),
		GID:              int(ru.GID),
		AdditionalGroups: toInts(ru.AdditionalGIDs),
		Init:             true,
		NoNewPrivileges:  &nnp,
	}
	st := &started{containerID: id, user: ru}
	if cfg.Process.Tty {
		err = runWithConsole(c, p, st)
	} else {
		err = runWithPipes(c, p, st, cfg.Process.Stdin)
	}
	if err != nil {
		return nil, err
	}
	crashpoint.Hit("monitor-container-started")
	return st, nil
}

// runWithPipes runs the container's init with pipes for stdout and stderr, and for
// stdin when withStdin; st gets the ends the monitor keeps.
func runWithPipes(c *libcontainer.Container, p *libcontainer.Process, st *started, withStdin bool) error {
	outR, outW, err := os.Pipe()
	if err != nil {
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return err
	}
	// A bigger pipe lets a chatty container run ahead of its monitor for longer and
	// lets the monitor read more per call; best effort (the limit is
	// /proc/sys/fs/pipe-max-size).
	for _, f := range []*os.File{outW, errW} {
		_, _ = unix.FcntlInt(f.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	}
	var inR, inW *os.File
	if withStdin {
		if inR, inW, err = os.Pipe(); err != nil {
			for _, f := range []*os.File{outR, outW, errR, errW} {
				f.Close()
			}
			return err
		}
		p.Stdin = inR
	}
	p.Stdout, p.Stderr = outW, errW
	runErr := c.Run(p)
	outW.Close()
	errW.Close()
	if inR != nil {
		inR.Close()
	}
	closeAll := func() {
		outR.Close()
		errR.Close()
		if inW != nil {
			inW.Close()
		}
	}
	if runErr != nil {
		closeAll()
		return startError(runErr)
	}
	pid, err := p.Pid()
	if err != nil {
		closeAll()
		return err
	}
	st.pid, st.stdout, st.stderr, st.stdin = pid, outR, errR, inW
	return nil
}

// runWithConsole runs the container's init on a new terminal (libcontainer makes
// it and sends its master over a socket pair); st gets the master.
func runWithConsole(c *libcontainer.Container, p *libcontainer.Process, st *started) error {
	parent, child, err := utils.NewSockPair("console")
	if err != nil {
		return err
	}
	defer parent.Close()
	p.ConsoleSocket = child
	runErr := c.Run(p)
	child.Close()
	if runErr != nil {
		return startError(runErr)
	}
	master, err := utils.RecvFile(parent)
	if err != nil {
		_ = p.Signal(unix.SIGKILL)
		return fmt.Errorf("receive the container's terminal: %w", err)
	}
	pid, err := p.Pid()
	if err != nil {
		master.Close()
		return err
	}
	st.pid, st.console = pid, master
	return nil
}

// processEnv is a process's environment: with a terminal and no TERM of its own it
// gets TERM=xterm, as containerd gives one (oci.WithTTY, and its CRI exec).
func processEnv(env []string, tty bool) []string {
	if !tty {
		return env
	}
	for _, e := range env {
		if strings.HasPrefix(e, "TERM=") {
			return env
		}
	}
	return append(append([]string(nil), env...), "TERM=xterm")
}

// startError shortens libcontainer's wrapped start errors to what a user can act on:
// `exec: "nosuchcmd": executable file not found in $PATH`.
func startError(err error) error {
	msg := err.Error()
	if i := strings.LastIndex(msg, "exec: "); i >= 0 {
		return errors.New(msg[i:])
	}
	return err
}

func toInts(v []uint32) []int {
	out := make([]int, len(v))
	for i, x := range v {
		out[i] = int(x)
	}
	return out
}

// mountRootfs gives a run its root filesystem under dir: an overlay of the image's
// layers with a fresh upper layer, or, with the vfs driver or when overlay cannot be
// mounted, a copy of the layers.
func mountRootfs(cfg *protocol.ContainerConfig, dir string) (string, error) {
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return "", err
	}
	if len(cfg.Rootfs.Layers) == 0 {
		return "", fmt.Errorf("image %s has no layers", cfg.Image.Name)
	}
	if cfg.Rootfs.Driver != "vfs" {
		upper, work := filepath.Join(dir, "upper"), filepath.Join(dir, "work")
		if err := os.MkdirAll(upper, 0o755); err != nil {
			return "", err
		}
		if err := os.MkdirAll(work, 0o755); err != nil {
			return "", err
		}
		lower := make([]string, len(cfg.Rootfs.Layers))
		for i, l := range cfg.Rootfs.Layers {
			lower[len(lower)-1-i] = l // overlay lists the top layer first
		}
		opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
		err := unix.Mount("overlay", rootfs, "overlay", 0, opts)
		if err == nil {
			return rootfs, nil
		}
		if cfg.Rootfs.Driver == "overlay" {
			return "", fmt.Errorf("mount overlay rootfs at %s: %w", rootfs, err)
		}
		// driver "" means overlay with a vfs fallback
	}
	if err := layerfs.Apply(rootfs, cfg.Rootfs.Layers); err != nil {
		return "", fmt.Errorf("copy image layers into %s: %w", rootfs, err)
	}
	return rootfs, nil
}

// checkLoaded proves that a run's libcontainer state is one this monitor makes for
// cfg: its cgroup is cfg's in every hierarchy and it has no hooks (BuildSpec sets
// none; Destroy would run them as root on the host).
func checkLoaded(c *libcontainer.Container, cfg *protocol.ContainerConfig) error {
	conf := c.Config()
	if conf.Cgroups == nil || conf.Cgroups.Path != cfg.Cgroup.Path {
		return fmt.Errorf("libcontainer state names a cgroup other than %s", cfg.Cgroup.Path)
	}
	if len(conf.Hooks) > 0 {
		return errors.New("libcontainer state has hooks, which agentd never sets")
	}
	st, err := c.State()
	if err != nil {
		return err
	}
	for _, p := range st.CgroupPaths {
		rest, ok := strings.CutSuffix(p, cfg.Cgroup.Path)
		if !ok || filepath.Clean(p) != p || (rest != "/sys/fs/cgroup" && filepath.Dir(rest) != "/sys/fs/cgroup") {
			return fmt.Errorf("libcontainer state names cgroup directory %s, not %s's", p, cfg.Cgroup.Path)
		}
	}
	return nil
}

// destroyRun removes what a run left: its processes (all of its cgroup), its
// libcontainer state and cgroup, and its rootfs. The container may be running, as
// when its monitor was killed: its processes are then no child of ours, so it
// waits for them to be gone before libcontainer may destroy the container. A run
// whose monitor died between libcontainer's Create and Run has a state directory
// without state.json, which libcontainer cannot load: it is removed by hand.
func destroyRun(cfg *protocol.ContainerConfig, stateDir, containerID string) error {
	var err error
	c, lerr := libcontainer.Load(cfg.StateRoot, containerID)
	if lerr != nil && cfg.StateRoot != "" && isContainerID(containerID) {
		if rerr := os.RemoveAll(filepath.Join(cfg.StateRoot, containerID)); rerr != nil {
			err = fmt.Errorf("container %s: remove its libcontainer state: %w", containerID, rerr)
		}
	}
	if lerr == nil {
		// state.json lies under run-dir, where anything may have been planted, and
		// names the cgroups Destroy empties and removes and the hooks it runs: it is
		// used only when it is the run this config would have made.
		if verr := checkLoaded(c, cfg); verr != nil {
			return fmt.Errorf("container %s: %w; left for the operator", containerID, verr)
		}
		if st, serr := c.State(); serr == nil && st.InitProcessPid > 0 {
			_ = cgroupkill.Pid(st.InitProcessPid, cfg.Cgroup.Path, unix.SIGKILL)
		}
		// With a shared pid namespace the init's death is not enough.
		if kerr := killCgroupProcs(cfg.Cgroup.Path); kerr != nil {
			err = fmt.Errorf("container %s: %w", containerID, kerr)
		}
		if derr := c.Destroy(); derr != nil && err == nil {
			err = fmt.Errorf("destroy container %s: %w", containerID, derr)
		}
	}
	dir, derr := runDir(cfg, stateDir, containerID)
	if derr != nil {
		return errors.Join(err, derr)
	}
	if uerr := unmountRun(dir); uerr != nil && err == nil {
		err = uerr
	}
	return err
}
