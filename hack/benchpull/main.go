// Command benchpull measures agentd's registry pull (package agent/image/pull)
// against a yardstick in the same run, as DESIGN.md's target asks (registry
// pull >= 1.0x `skopeo copy`): an image of -size MiB in -layers gzip layers is
// pushed to go-containerregistry's registry on a loopback port, then pulled
// -reps times by each contender, alternating, each into a fresh directory:
//
//   - agentd: pull.Puller into an image store (download, verify, fsync, unpack
//     into layer directories, commit);
//   - skopeo: `skopeo copy docker://… dir:…` when skopeo is installed;
//   - crane: go-containerregistry's crane.Pull and an OCI layout write (what
//     skopeo's copy does: blobs to disk, verified), always.
//
// It prints the median MiB/s (compressed bytes over wall time) of each, the
// ratio of agentd's to the yardstick's (skopeo's if it ran, else crane's), and
// the target. It is a benchmark, not a test: it never fails on a slow figure.
//
//	go run ./hack/benchpull [-size 200] [-layers 8] [-reps 3] [-dir /var/tmp]
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/agentd-project/agentd/agent/image"
	"github.com/agentd-project/agentd/agent/image/pull"
)

func main() {
	sizeMiB := flag.Int("size", 200, "uncompressed size of the image, MiB")
	layers := flag.Int("layers", 8, "number of layers")
	reps := flag.Int("reps", 3, "pulls per contender")
	dir := flag.String("dir", "/var/tmp", "where the stores and layouts are written (a disk, not tmpfs, for real figures)")
	parallel := flag.Int("parallel", 3, "agentd's parallel layer downloads")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of agentd's pulls to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchpull:", err)
			os.Exit(1)
		}
		profile = f
	}
	if err := run(*sizeMiB, *layers, *reps, *dir, *parallel); err != nil {
		fmt.Fprintln(os.Stderr, "benchpull:", err)
		os.Exit(1)
	}
}

func run(sizeMiB, nLayers, reps int, dir string, parallel int) error {
	work, err := os.MkdirTemp(dir, "benchpull-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	fmt.Printf("building a %d MiB image of %d layers...\n", sizeMiB, nLayers)
	img, err := makeImage(sizeMiB<<20, nLayers)
	if err != nil {
		return err
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/bench/image:v1"
	if err := crane.Push(img, ref, crane.Insecure); err != nil {
		return fmt.Errorf("pushing: %w", err)
	}
	size, err := compressedSize(img)
	if err != nil {
		return err
	}
	fmt.Printf("image %s: %.1f MiB compressed, registry at %s, pulls into %s\n", ref, float64(size)/(1<<20), srv.URL, work)

	type contender struct {
		name string
		pull func(dest string) error
	}
	cs := []contender{
		{"agentd", func(dest string) error {
			if profile != nil {
				pprof.StartCPUProfile(profile)
				defer pprof.StopCPUProfile()
				profile = nil // the first pull only
			}
			s, err := image.Open(dest)
			if err != nil {
				return err
			}
			start := time.Now()
			var lastDownload time.Duration
			_, err = pull.New(s, pull.Options{Parallel: parallel}).Pull(context.Background(), ref, nil, func(p pull.Progress) {
				if p.Status == "Download complete" {
					lastDownload = time.Since(start)
				}
			})
			downloads = append(downloads, lastDownload)
			return err
		}},
		{"crane", func(dest string) error {
			im, err := crane.Pull(ref, crane.Insecure)
			if err != nil {
				return err
			}
			p, err := layout.Write(dest, empty.Index)
			if err != nil {
				return err
			}
			return p.AppendImage(im)
		}},
	}
	if skopeo, err := exec.LookPath("skopeo"); err == nil {
		cs = append(cs, contender{"skopeo", func(dest string) error {
			out, err := exec.Command(skopeo, "copy", "--src-tls-verify=false", "docker://"+ref, "dir:"+dest).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		}})
	} else {
		fmt.Println("skopeo is not installed: crane.Pull + an OCI layout write is the yardstick")
	}

	times, cpus := map[string][]time.Duration{}, map[string][]time.Duration{}
	for r := 0; r < reps; r++ {
		for _, c := range cs {
			dest := filepath.Join(work, fmt.Sprintf("%s-%d", c.name, r))
			syncFS(work)
			cpu0 := cpuTime()
			start := time.Now()
			if err := c.pull(dest); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			d := time.Since(start)
			cpu := cpuTime() - cpu0
			times[c.name] = append(times[c.name], d)
			cpus[c.name] = append(cpus[c.name], cpu)
			fmt.Printf("  %-7s rep %d: %v (%.0f MiB/s), CPU %v\n", c.name, r+1, d.Round(time.Millisecond), mibps(size, d), cpu.Round(time.Millisecond))
			os.RemoveAll(dest)
		}
	}

	fmt.Println()
	med := map[string]float64{}
	for _, c := range cs {
		med[c.name] = mibps(size, median(times[c.name]))
		fmt.Printf("%-7s median %.0f MiB/s, CPU (user+sys, the registry's included) %v\n", c.name, med[c.name], median(cpus[c.name]).Round(time.Millisecond))
	}
	fmt.Printf("        (its layers were all downloaded and verified after %v, median: %.0f MiB/s)\n",
		median(downloads).Round(time.Millisecond), mibps(size, median(downloads)))
	yard := "crane"
	if _, ok := med["skopeo"]; ok {
		yard = "skopeo"
	}
	fmt.Printf("agentd / %s: %.2fx (target >= 1.0x skopeo copy; DESIGN.md)\n", yard, med["agentd"]/med[yard])
	fmt.Println("agentd also unpacks the layers (decompress, check diff IDs, write files) and syncs them before it")
	fmt.Println("commits; the yardstick only writes the blobs. Load average now:", loadavg())
	return nil
}

// downloads are when agentd's pulls had every layer downloaded and verified
// (the rest of a pull is unpacking and committing).
var downloads []time.Duration

// profile receives the CPU profile of agentd's first pull, if asked for.
var profile *os.File

func mibps(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// makeImage builds an image of n gzip layers totalling size bytes of files:
// half of each file random, half text, so that layers compress about as real
// ones do.
func makeImage(size, n int) (v1.Image, error) {
	ls := make([]v1.Layer, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tarBytes := makeTar(rand.New(rand.NewSource(int64(i))), size/n, i)
			l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
				return io.NopCloser(bytes.NewReader(tarBytes)), nil
			})
			if err == nil {
				_, err = l.Digest() // compress once, now, in parallel
			}
			ls[i], errs[i] = l, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return mutate.AppendLayers(empty.Image, ls...)
}

func makeTar(r *rand.Rand, size, layer int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	words := []string{"the ", "agent ", "pulls ", "layers ", "from ", "a ", "registry ", "and ", "unpacks ", "them\n"}
	const fileSize = 1 << 20
	for f := 0; f*fileSize < size; f++ {
		body := make([]byte, 0, fileSize)
		rnd := make([]byte, fileSize/2)
		r.Read(rnd)
		body = append(body, rnd...)
		for len(body) < fileSize {
			body = append(body, words[r.Intn(len(words))]...)
		}
		body = body[:fileSize]
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("l%d/dir%d/file%d", layer, f/16, f), Mode: 0o644, Size: fileSize, ModTime: time.Unix(1e9, 0)})
		tw.Write(body)
	}
	tw.Close()
	return buf.Bytes()
}

func compressedSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, err
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n, nil
}

// cpuTime is the user and system CPU time of this process and its waited-for
// children (skopeo) so far.
func cpuTime() time.Duration {
	var self, children syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(children.Utime) + tv(children.Stime)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func syncFS(dir string) {
	if f, err := os.Open(dir); err == nil {
		f.Sync()
		f.Close()
	}
	exec.Command("sync").Run()
}
