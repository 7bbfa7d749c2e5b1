// Package yardstick measures u, the unit every performance target of DESIGN.md is
// a ratio of: Debian's conmon + runc's start → the container's first output line
// in its log file, p50. Machines differ from run to run and from one machine to
// another, so each benchmark measures u in the same run as its own figures.
//
// It also holds what starting a container under a monitor takes, shared by the
// conmon+runc driver here and hack/benchmon's agent-monitor driver: the Driver
// interface, a rootfs unpacked from the test image, and StartOnce, the timed start.
package yardstick

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// Driver starts and stops containers under one kind of monitor.
type Driver interface {
	Name() string
	// Prepare readies a container: everything that is not part of the timed start
	// (config, bundle, rootfs mount, log directory). It returns the container.
	Prepare(name string, args []string) (*Container, error)
	// Start starts a prepared container and returns once the monitor says it was
	// started.
	Start(ctx context.Context, c *Container) error
	// Exited reports whether the container has exited and its monitor recorded it.
	Exited(c *Container) bool
	// Stop kills the container and removes everything it had: monitor, cgroups,
	// mounts, state and log.
	Stop(ctx context.Context, c *Container) error
	// Close removes what is left of the driver (every container it prepared, its
	// cgroup parent, its directories). It is safe to call after a failure.
	Close() error
}

// Container is one container of a driver.
type Container struct {
	Name    string
	ID      string
	LogDir  string // exists after Prepare; the log file appears in it
	LogPath string
	// MonitorPids are the monitor's processes (agent-monitor: the monitor that
	// stays, agent-monitor-lean; conmon: the daemonized conmon).
	MonitorPids []int
	Pid         int // the container's init

	Priv any // the driver's own state
}

// StartOnce times one start of `echo ready; sleep 3600`: from just before
// Start until "ready" is in the log file (toLine) and until Start returned
// (toReturn); then it removes the container.
func StartOnce(ctx context.Context, d Driver, name string) (toLine, toReturn time.Duration, err error) {
	c, err := d.Prepare(name, []string{"sh", "-c", "echo ready; sleep 3600"})
	if c != nil {
		defer func() {
			if serr := d.Stop(context.Background(), c); serr != nil {
				err = errors.Join(err, serr)
			}
		}()
	}
	if err != nil {
		return 0, 0, err
	}
	w, err := newTextWatcher(c.LogDir, filepath.Base(c.LogPath), " F ready\n")
	if err != nil {
		return 0, 0, err
	}
	defer w.Close()
	type seen struct {
		at  time.Time
		err error
	}
	seenc := make(chan seen, 1)
	t0 := time.Now()
	go func() {
		at, err := w.Wait(t0.Add(30 * time.Second))
		seenc <- seen{at, err}
	}()
	if err := d.Start(ctx, c); err != nil {
		return 0, 0, err
	}
	toReturn = time.Since(t0)
	s := <-seenc
	if s.err != nil {
		return 0, 0, s.err
	}
	return s.at.Sub(t0), toReturn, nil
}

// U is the yardstick of one run.
type U struct {
	P50     time.Duration
	Samples []time.Duration // start → first output, one per measured start
	Peer    string          // conmon's and runc's versions
}

// String is the yardstick as the reports print it.
func (u *U) String() string {
	return fmt.Sprintf("u = %.1f ms (conmon+runc start -> first output, p50 of %d; %s)", benchutil.Millis(u.P50), len(u.Samples), u.Peer)
}

// Of is d in units of u.
func (u *U) Of(d time.Duration) float64 { return float64(d) / float64(u.P50) }

// Header are the column titles of Cells.
var Header = []string{"figure", "u", "ratio", "target", ""}

// Cells are a figure's table cells beside the yardstick: the figure, u, the
// ratio and the target (at most maxU u) with its verdict.
func (u *U) Cells(d time.Duration, maxU float64) []string {
	r := u.Of(d)
	return []string{benchutil.Dur(d), benchutil.Dur(u.P50), fmt.Sprintf("%.2f u", r), fmt.Sprintf("<= %g u", maxU), benchutil.Verdict(r <= maxU)}
}

// Config says how Measure runs.
type Config struct {
	Dir            string // work directory of its own (created, removed at the end)
	Conmon, Runc   string // binaries; "" looks them up in PATH
	Image          string // the test image archive (make image)
	Warmup, Starts int
}

// Measure measures u: c.Warmup unmeasured, then c.Starts measured starts of a
// container under conmon + runc, one at a time. It removes everything it made.
func Measure(ctx context.Context, c Config) (_ *U, err error) {
	for _, p := range []*string{&c.Conmon, &c.Runc} {
		name := map[*string]string{&c.Conmon: "conmon", &c.Runc: "runc"}[p]
		if *p == "" {
			if *p, err = exec.LookPath(name); err != nil {
				return nil, fmt.Errorf("%s not found (the yardstick u is conmon+runc's start): run `sudo hack/install-deps.sh`", name)
			}
		}
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if rerr := benchutil.RemoveUnlessMounted(c.Dir); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	rootfs, err := Unpack(ctx, c.Image, filepath.Join(c.Dir, "image"))
	if err != nil {
		return nil, err
	}
	d, err := NewConmonRunc(filepath.Join(c.Dir, "conmon"), c.Conmon, c.Runc, rootfs, false)
	if d != nil {
		defer func() {
			if cerr := d.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("clean up conmon: %w", cerr))
			}
		}()
	}
	if err != nil {
		return nil, err
	}
	u := &U{Peer: Versions(c.Conmon, c.Runc)}
	for i := 0; i < c.Warmup+c.Starts; i++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		toLine, _, err := StartOnce(ctx, d, fmt.Sprintf("u%02d", i))
		if err != nil {
			return nil, fmt.Errorf("yardstick (conmon+runc start): %w", err)
		}
		if i >= c.Warmup {
			u.Samples = append(u.Samples, toLine)
		}
	}
	u.P50 = benchutil.Percentile(u.Samples, 50)
	return u, nil
}

// Versions is the first line of `conmon --version` and `runc --version`.
func Versions(conmon, runc string) string {
	var parts []string
	for _, b := range []string{conmon, runc} {
		out, _ := exec.Command(b, "--version").Output()
		parts = append(parts, strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
	}
	return strings.Join(parts, ", ")
}

// textWatcher waits for a text to appear in a file of a directory: inotify on the
// directory wakes it at once on every create/write, and a 1 ms poll timeout covers
// anything inotify could miss. So detection is within ~1 ms of the write.
type textWatcher struct {
	fd   int
	path string
	text []byte
}

func newTextWatcher(dir, file string, text string) (*textWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MODIFY|unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify %s: %w", dir, err)
	}
	return &textWatcher{fd: fd, path: filepath.Join(dir, file), text: []byte(text)}, nil
}

func (w *textWatcher) Close() { unix.Close(w.fd) }

// Wait returns when the text was seen, or an error at the deadline.
func (w *textWatcher) Wait(deadline time.Time) (time.Time, error) {
	buf := make([]byte, 64<<10)
	ev := make([]byte, 4096)
	pfd := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
	for {
		if f, err := os.Open(w.path); err == nil {
			n, _ := io.ReadFull(f, buf)
			f.Close()
			if bytes.Contains(buf[:n], w.text) {
				return time.Now(), nil
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%q did not appear in %s", w.text, w.path)
		}
		_, _ = unix.Poll(pfd, 1)
		for {
			if n, err := unix.Read(w.fd, ev); n <= 0 || err != nil {
				break
			}
		}
	}
}
