package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// BenchmarkWriteToSnapshot measures how long a manifest written in place takes,
// from the end of the write, to reach the receiver as a snapshot (the first step of
// "manifest written → container output"). It reports the median and the worst case;
// the time the write itself takes is left out, as it varies with the disk.
func BenchmarkWriteToSnapshot(b *testing.B) {
	benchmarkLatency(b, func(dir string, i int) {
		path := filepath.Join(dir, "web.yaml")
		if err := os.WriteFile(path, []byte(podYAML("web", fmt.Sprintf("localhost/busybox:%d", i))), 0o644); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkRenameToSnapshot is the same for a manifest written to a temporary name
// and renamed into place, as writers should.
func BenchmarkRenameToSnapshot(b *testing.B) {
	benchmarkLatency(b, func(dir string, i int) {
		tmp, path := filepath.Join(dir, "web.yaml.tmp"), filepath.Join(dir, "web.yaml")
		if err := os.WriteFile(tmp, []byte(podYAML("web", fmt.Sprintf("localhost/busybox:%d", i))), 0o644); err != nil {
			b.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			b.Fatal(err)
		}
	})
}

func benchmarkLatency(b *testing.B, change func(dir string, i int)) {
	dir := filepath.Join(b.TempDir(), "manifests")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 20 { // a realistic directory around the changing file
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("other-%d.yaml", i)),
			[]byte(podYAML(fmt.Sprintf("other-%d", i), "localhost/busybox")), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	out := make(chan Snapshot)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); Run(ctx, Config{Dir: dir, NodeName: "node-1"}, out) }()
	defer func() { cancel(); <-done }()
	<-out

	var lat []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		change(dir, i)
		begin := time.Now()
		want := fmt.Sprintf("localhost/busybox:%d", i)
		for found := false; !found; {
			select {
			case s := <-out:
				for _, p := range s.Pods {
					found = found || p.Name == "web" && p.Spec.Containers[0].Image == want
				}
			case <-time.After(5 * time.Second):
				b.Fatalf("no snapshot with image %s", want)
			}
		}
		lat = append(lat, time.Since(begin))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkRelist100 is one relist of 100 unchanged manifests (the steady state).
func BenchmarkRelist100(b *testing.B) {
	s := benchScanner(b)
	s.scan()
	for b.Loop() {
		s.scan()
	}
	b.ReportMetric(float64(s.parses), "parses")
}

// BenchmarkScan100Cold parses 100 manifests (agent start, or `cp` of 100 files).
func BenchmarkScan100Cold(b *testing.B) {
	s := benchScanner(b)
	for b.Loop() {
		clear(s.cache)
		s.scan()
	}
}

func benchScanner(b *testing.B) *scanner {
	dir := filepath.Join(b.TempDir(), "manifests")
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("pod-%d.yaml", i)),
			[]byte(podYAML(fmt.Sprintf("pod-%d", i), "localhost/busybox")), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	s := newScanner(dir, "node-1")
	s.now = func() time.Time { return time.Now().Add(time.Hour) } // files look old: trust the cache
	return s
}
