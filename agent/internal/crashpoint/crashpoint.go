// Package crashpoint lets tests kill agentd at a named step of a multi-step
// operation, to prove that a restarted agentd converges from there.
//
// AGENTD_CRASH_AT names the steps, comma-separated: "sandbox-network-added" kills
// the process (SIGKILL, as kill -9 would) the first time that step is reached;
// "sandbox-network-added@3" the third time. Unset, Hit costs one atomic load.
// The variable is read once, when the process starts: it is as trusted as the
// rest of agentd's environment, and only ever makes agentd end itself.
package crashpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Env is the environment variable that arms crash points.
const Env = "AGENTD_CRASH_AT"

var (
	armed  atomic.Bool
	mu     sync.Mutex
	points map[string]*point // guarded by mu
)

type point struct {
	at   int // the hit that kills
	hits int
}

func init() {
	ps, err := Parse(os.Getenv(Env))
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", Env, err)
		os.Exit(2)
	}
	if len(ps) > 0 {
		points = map[string]*point{}
		for name, at := range ps {
			points[name] = &point{at: at}
		}
		armed.Store(true)
	}
}

// Parse reads a crash-point list: names, each optionally "@N" (the N-th hit, from 1).
func Parse(s string) (map[string]int, error) {
	out := map[string]int{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, n, found := strings.Cut(f, "@")
		at := 1
		if found {
			v, err := strconv.Atoi(n)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("crash point %q: the count after @ must be a positive number", f)
			}
			at = v
		}
		if !valid(name) {
			return nil, fmt.Errorf("crash point %q: names are lower-case letters, digits and '-'", f)
		}
		out[name] = at
	}
	return out, nil
}

func valid(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// Hit kills the process if the step name is armed and this is the hit it names.
func Hit(name string) {
	if !armed.Load() {
		return
	}
	mu.Lock()
	p := points[name]
	kill := false
	if p != nil {
		p.hits++
		kill = p.hits == p.at
	}
	mu.Unlock()
	if kill {
		fmt.Fprintf(os.Stderr, "crashpoint: killing %s at %s\n", filepath.Base(os.Args[0]), name)
		_ = unix.Kill(os.Getpid(), unix.SIGKILL)
		select {} // SIGKILL is not deliverable late, but never carry on past the point
	}
}
