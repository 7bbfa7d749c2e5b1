// Package detach makes agent-monitor's `start` cheap: linked into the binary (a
// blank import), it detaches the monitor in a C constructor, before the Go runtime
// starts, so a monitor start costs one exec of agent-monitor instead of two.
//
// For `agent-monitor start ARGS`, the constructor closes every descriptor above
// the lock (protocol.LockFd), forks, and the parent exits 0 at once: the caller
// (agentd, which waits for that exit) never has the monitor as its child. The
// child starts a session of its own, puts its stdio on /dev/null, moves to / and
// rewrites its first argument to "run", so the Go program that then starts in it
// is the detached monitor: `agent-monitor run ARGS`, with the sync pipe and the
// lock on the descriptors agentd passed. Its environment is the caller's, which
// agentd keeps to PATH (and the crash points of tests).
//
// A Go fork would need an exec of its own (the runtime's threads do not survive a
// fork): the double start cost about 11 ms and 8 ms of CPU per container on a busy
// 2-CPU machine, on the path from a pod's manifest to its container's first output.
package detach

// #cgo CFLAGS: -Wall -Werror
import "C"
