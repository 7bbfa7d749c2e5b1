package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/agentd-project/agentd/hack/internal/benchutil"
)

// procStartResult is what starting a process of ours costs.
type procStartResult struct {
	initClock []time.Duration // agentd's package init, summed over its packages, per run
	initPkgs  int             // packages with an init, as inittrace lists them
	ctl       []time.Duration // exec -> exit of `agentctl version` (talks to the running agentd)
	hello     []time.Duration // exec -> exit of a hello-world Go binary
}

const procStartRuns = 20

// measureProcStart times agentd's Go package init from its own trace
// (GODEBUG=inittrace=1 `agentd --version`), and `agentctl version` against a
// hello-world Go binary built here the way the Makefile builds agentctl
// (-trimpath, stripped), the two run alternately.
func measureProcStart(ctx context.Context, e *env) (*procStartResult, error) {
	res := &procStartResult{}
	for i := 0; i < 5; i++ {
		cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "agentd"), "--version")
		cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return nil, fmt.Errorf("agentd --version: %w: %s", err, stderr.String())
		}
		clock, n := parseInittrace(stderr.Bytes())
		if n == 0 {
			return nil, fmt.Errorf("agentd --version with GODEBUG=inittrace=1 printed no init lines: %q", stderr.String())
		}
		res.initClock, res.initPkgs = append(res.initClock, clock), n
	}

	dir := filepath.Join(e.base, "hello")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644); err != nil {
		return nil, err
	}
	hello := filepath.Join(dir, "hello")
	if out, err := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", hello, src).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build hello world: %w: %s", err, out)
	}
	run := func(argv ...string) (time.Duration, error) {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(t0)
		if err != nil {
			return 0, fmt.Errorf("%v: %w: %s", argv, err, out)
		}
		return took, nil
	}
	for i := 0; i < procStartRuns+1; i++ { // the first of each is a warm-up
		c, err := run(filepath.Join(e.bin, "agentctl"), "--socket", e.socket, "version")
		if err != nil {
			return nil, err
		}
		h, err := run(hello)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			res.ctl, res.hello = append(res.ctl, c), append(res.hello, h)
		}
	}
	fmt.Printf("   agentd package init %s (%d packages), agentctl version %s, hello world %s (p50s)\n",
		benchutil.Dur(pct(res.initClock, 50)), res.initPkgs, benchutil.Dur(pct(res.ctl, 50)), benchutil.Dur(pct(res.hello, 50)))
	return res, nil
}

// inittraceRE matches a line of GODEBUG=inittrace=1:
// "init internal/bytealg @0.008 ms, 0.004 ms clock, 0 bytes, 0 allocs".
var inittraceRE = regexp.MustCompile(`^init \S+ @[0-9.]+ ms, ([0-9.]+) ms clock`)

// parseInittrace sums the clock time of every package's init in a trace and
// counts the packages.
func parseInittrace(trace []byte) (time.Duration, int) {
	var sum float64
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(trace))
	for sc.Scan() {
		if m := inittraceRE.FindSubmatch(sc.Bytes()); m != nil {
			v, _ := strconv.ParseFloat(string(m[1]), 64)
			sum += v
			n++
		}
	}
	return time.Duration(sum * float64(time.Millisecond)), n
}
