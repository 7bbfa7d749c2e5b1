package benchutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Binaries are the programs of `make build` that a benchmark of agentd runs.
var Binaries = []string{"agentd", "agentctl", "agent-monitor", "agent-monitor-lean", "agent-etcd"}

// Agentd is one agentd process of a benchmark: started with Exec, stopped with
// Stop or Kill; it may be started again once it has exited.
type Agentd struct {
	// LogFile receives agentd's stdout and stderr (set by Exec).
	LogFile string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has exited; exitErr is then set
	exitErr error
}

// ExecConfig says how Exec runs agentd.
type ExecConfig struct {
	Argv   []string // agentd (or a wrapper such as perf, then agentd) and its arguments
	Log    string   // the file for its stdout and stderr
	Append bool     // append to Log, else truncate it
	Header string   // written to Log before the exec, when not ""
	Dir    string   // its working directory, when not ""
}

// Exec starts agentd in its own process group (a Ctrl-C in the terminal reaches
// only us, and we stop it) and returns the time just before the exec; it does
// not wait for anything.
func (a *Agentd) Exec(c ExecConfig) (time.Time, error) {
	if a.Running() {
		return time.Time{}, errors.New("agentd runs already")
	}
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if c.Append {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	out, err := os.OpenFile(c.Log, flags, 0o600)
	if err != nil {
		return time.Time{}, err
	}
	defer out.Close()
	a.LogFile = c.Log
	if c.Header != "" {
		fmt.Fprintln(out, c.Header)
	}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Dir = c.Dir
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return t0, err
	}
	a.cmd, a.exited, a.exitErr = cmd, make(chan struct{}), nil
	go func() { a.exitErr = cmd.Wait(); close(a.exited) }()
	return t0, nil
}

// WaitAPI waits until ping (a request to agentd's API on socket) succeeds; an
// error when agentd exits, ctx is done or timeout passes first.
func (a *Agentd) WaitAPI(ctx context.Context, timeout time.Duration, socket string, ping func(context.Context) error) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-a.exited:
			return fmt.Errorf("agentd exited at start: %v\n%s", a.exitErr, a.LogTail(30))
		default:
		}
		err := ping(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("agentd does not answer on %s: %v\n%s", socket, err, a.LogTail(30))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Running reports whether agentd was started and has not exited.
func (a *Agentd) Running() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.exited:
		return false
	default:
		return true
	}
}

// Pid is the process started last (0 before the first Exec).
func (a *Agentd) Pid() int {
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// Signal sends sig to the process started last.
func (a *Agentd) Signal(sig os.Signal) error { return a.cmd.Process.Signal(sig) }

// Exited is closed when the process started last has exited.
func (a *Agentd) Exited() <-chan struct{} { return a.exited }

// CheckAlive returns an error, with the end of agentd's log, when it has exited.
func (a *Agentd) CheckAlive() error {
	if a.Running() {
		return nil
	}
	return fmt.Errorf("agentd exited: %v\n%s", a.exitErr, a.LogTail(20))
}

// Stop sends SIGTERM and waits for agentd to exit; it returns how long that took.
func (a *Agentd) Stop(timeout time.Duration) (time.Duration, error) {
	if !a.Running() {
		return 0, nil
	}
	t0 := time.Now()
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return 0, err
	}
	select {
	case <-a.exited:
		took := time.Since(t0)
		if a.exitErr != nil {
			return took, fmt.Errorf("agentd exited with %v after SIGTERM\n%s", a.exitErr, a.LogTail(20))
		}
		return took, nil
	case <-time.After(timeout):
		return time.Since(t0), fmt.Errorf("agentd did not exit within %v of SIGTERM\n%s", timeout, a.LogTail(20))
	}
}

// Kill sends SIGKILL and waits for the exit.
func (a *Agentd) Kill() {
	if a.Running() {
		_ = a.cmd.Process.Signal(syscall.SIGKILL)
		<-a.exited
	}
}

// LogTail is the last n lines of agentd's log, indented, for error messages.
func (a *Agentd) LogTail(n int) string {
	b, _ := os.ReadFile(a.LogFile)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "agentd log (last lines, " + a.LogFile + "):\n  " + strings.Join(lines, "\n  ")
}

// StopLeftMonitors handles monitors left running from bin, the run's copy of the
// binaries (agentd crashed or was killed, or did not stop them): an agentd with
// live restore off stops every monitor it finds at start, and with no manifests
// it starts nothing. So it empties manifests, runs start (which must start agentd
// with live restore off and wait for its API) and stops agentd again; timeout
// bounds each step. printf announces it.
func (a *Agentd) StopLeftMonitors(bin, manifests string, timeout time.Duration, printf func(string, ...any), start func(context.Context) error) []error {
	left := MonitorPids(bin)
	if len(left) == 0 {
		return nil
	}
	var errs []error
	printf("clean-up: %d monitor(s) left; starting agentd once more (live restore off, no manifests) to stop them", len(left))
	_ = os.RemoveAll(manifests)
	_ = os.MkdirAll(manifests, 0o755)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	if err := start(ctx); err != nil {
		errs = append(errs, fmt.Errorf("clean-up start: %w", err))
	}
	cancel()
	if _, err := a.Stop(timeout); err != nil {
		errs = append(errs, err)
	}
	a.Kill()
	return errs
}

// MonitorPids are the monitors running from bin (a run's copy of the binaries):
// the processes, zombies left out, whose executable is bin/agent-monitor or
// bin/agent-monitor-lean — a monitor is one process, whichever image it runs.
func MonitorPids(bin string) []int {
	var out []int
	for _, p := range Processes(nil) {
		if (p.Exe == filepath.Join(bin, "agent-monitor") || p.Exe == filepath.Join(bin, "agent-monitor-lean")) && Alive(p.Pid) {
			out = append(out, p.Pid)
		}
	}
	return out
}

// WriteManifest puts a manifest in place as tools should: under a temporary
// name the manifest source skips (a dotfile), then renamed to file.
func WriteManifest(dir, file, content string) error {
	tmp := filepath.Join(dir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, file))
}

// CopyFile copies src to dst, created (or truncated) with mode.
func CopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// CopyBinaries copies Binaries from src into dst (created): a snapshot, so that
// a `make build` elsewhere during the run does not swap them under agentd and
// its monitors.
func CopyBinaries(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, b := range Binaries {
		if err := CopyFile(filepath.Join(src, b), filepath.Join(dst, b), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// ImportImage imports an image archive into agentd's store under root, offline,
// with the agentctl in bin.
func ImportImage(ctx context.Context, bin, root, archive string) error {
	out, err := exec.CommandContext(ctx, filepath.Join(bin, "agentctl"), "--root", root, "image", "import", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("agentctl image import %s: %w: %s", archive, err, strings.TrimSpace(string(out)))
	}
	return nil
}
