package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// logWaiter waits for a line in a pod's CRI log file,
// <log-dir>/<namespace>_<pod>_<uid>/<container>/0.log, which does not exist when
// the wait starts. inotify watches the log dir, then each pod dir and container
// dir as they appear, so a create or write wakes it at once; a 2 ms poll timeout
// covers a directory created between a glob and its watch.
type logWaiter struct {
	fd      int
	logDir  string
	watched map[string]bool
	buf     []byte
	ev      []byte
}

func newLogWaiter(logDir string) (*logWaiter, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	w := &logWaiter{fd: fd, logDir: logDir, watched: map[string]bool{}, buf: make([]byte, 64<<10), ev: make([]byte, 64<<10)}
	if err := w.watch(logDir); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return w, nil
}

func (w *logWaiter) Close() { unix.Close(w.fd) }

func (w *logWaiter) watch(dir string) error {
	if w.watched[dir] {
		return nil
	}
	if _, err := unix.InotifyAddWatch(w.fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_MODIFY|unix.IN_CLOSE_WRITE); err != nil {
		return fmt.Errorf("inotify %s: %w", dir, err)
	}
	w.watched[dir] = true
	return nil
}

// wait returns when text shows in the log of container of the pod named pod (any
// namespace), with the log file's path; an error at the deadline or as soon as
// alive returns one.
func (w *logWaiter) wait(ctx context.Context, pod, container, text string, deadline time.Time, alive func() error) (time.Time, string, error) {
	pfd := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
	want := []byte(text)
	for {
		podDirs, _ := filepath.Glob(filepath.Join(w.logDir, "*_"+pod+"_*"))
		for _, pd := range podDirs {
			_ = w.watch(pd)
			cd := filepath.Join(pd, container)
			if _, err := os.Stat(cd); err != nil {
				continue
			}
			_ = w.watch(cd)
			path := filepath.Join(cd, "0.log")
			if f, err := os.Open(path); err == nil {
				n, _ := io.ReadFull(f, w.buf)
				f.Close()
				if bytes.Contains(w.buf[:n], want) {
					return time.Now(), path, nil
				}
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, "", fmt.Errorf("%q did not appear in %s within the deadline (pod dirs: %v)", text, filepath.Join(w.logDir, "*_"+pod+"_*", container, "0.log"), podDirs)
		}
		if ctx.Err() != nil {
			return time.Time{}, "", ctx.Err()
		}
		if err := alive(); err != nil {
			return time.Time{}, "", err
		}
		_, _ = unix.Poll(pfd, 2)
		for {
			if n, err := unix.Read(w.fd, w.ev); n <= 0 || err != nil {
				break
			}
		}
	}
}

// recordTime is the timestamp of the first CRI log record in path whose content
// contains text: when the monitor read the line from the container's pipe.
func recordTime(path, text string) (time.Time, error) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// <RFC3339Nano> <stream> <P|F> <content>
		line := sc.Bytes()
		parts := bytes.SplitN(line, []byte(" "), 4)
		if len(parts) == 4 && bytes.Contains(parts[3], []byte(text)) {
			return time.Parse(time.RFC3339Nano, string(parts[0]))
		}
	}
	if err := sc.Err(); err != nil {
		return time.Time{}, err
	}
	return time.Time{}, fmt.Errorf("%s: no record with %q", path, text)
}
