package ctl

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/agentd-project/agentd/agent/api"
)

// logs prints the logs of a pod's containers, one after the other, or (following) all
// at once, each line whole, as kubectl logs does; with prefix each line starts with
// kubectl's "[pod/NAME/CONTAINER] ".
func (o *options) logs(ctx context.Context, c *api.Client, namespace, pod string, containers []string, opts api.LogOptions, prefix bool) error {
	var mu sync.Mutex // one line at a time on o.out
	writer := func(container string) *lineWriter {
		lw := &lineWriter{w: o.out, mu: &mu}
		if prefix {
			lw.prefix = []byte(fmt.Sprintf("[pod/%s/%s] ", pod, container))
		}
		return lw
	}
	get := func(ctx context.Context, container string) error {
		one := opts
		one.Container = container
		w := writer(container)
		err := c.Logs(ctx, namespace, pod, one, w)
		if ferr := w.Close(); err == nil {
			err = ferr
		}
		return notFound(err, pod)
	}
	if !opts.Follow || len(containers) == 1 {
		for _, name := range containers {
			if err := get(ctx, name); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(containers))
	for _, name := range containers {
		go func() { errs <- get(ctx, name) }()
	}
	var first error
	for range containers {
		if err := <-errs; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	return first
}

// allContainerNames are the containers `logs --all-containers` prints, in kubectl's
// order: init containers, containers, ephemeral containers.
func allContainerNames(p *corev1.Pod) []string {
	var names []string
	for _, c := range p.Spec.InitContainers {
		names = append(names, c.Name)
	}
	for _, c := range p.Spec.Containers {
		names = append(names, c.Name)
	}
	for _, c := range p.Spec.EphemeralContainers {
		names = append(names, c.Name)
	}
	return names
}

// lineWriter writes whole lines to w under mu, each after prefix, so that the lines of
// several containers followed at once do not interleave.
type lineWriter struct {
	w      io.Writer
	mu     *sync.Mutex
	prefix []byte
	buf    []byte
}

func (lw *lineWriter) Write(p []byte) (int, error) {
	lw.buf = append(lw.buf, p...)
	end := bytes.LastIndexByte(lw.buf, '\n')
	if end < 0 {
		return len(p), nil
	}
	if err := lw.emit(lw.buf[:end+1]); err != nil {
		return 0, err
	}
	lw.buf = append(lw.buf[:0], lw.buf[end+1:]...)
	return len(p), nil
}

// Close writes what is left of an unfinished line (--limit-bytes can cut one).
func (lw *lineWriter) Close() error {
	if len(lw.buf) == 0 {
		return nil
	}
	err := lw.emit(lw.buf)
	lw.buf = nil
	return err
}

func (lw *lineWriter) emit(lines []byte) error {
	var out []byte
	if len(lw.prefix) == 0 {
		out = lines
	} else {
		for len(lines) > 0 {
			i := bytes.IndexByte(lines, '\n')
			if i < 0 {
				i = len(lines) - 1
			}
			out = append(out, lw.prefix...)
			out = append(out, lines[:i+1]...)
			lines = lines[i+1:]
		}
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	_, err := lw.w.Write(out)
	return err
}
