package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-project/agentd/agent/api"
	"github.com/agentd-project/agentd/agent/image"
	criserver "github.com/agentd-project/agentd/cri/server"
)

// criBackend is the agent as the CRI server sees it (criserver.Backend).
type criBackend struct{ a *Agent }

var _ criserver.Backend = criBackend{}

// serveCRI serves the Kubernetes CRI on Options.CRISocket (nothing when it is
// empty) with the agentctl socket's protection (api.ListenUnix); stop ends it
// and removes the socket.
func (a *Agent) serveCRI() (stop func(), err error) {
	path := a.opts.CRISocket
	if path == "" {
		a.log.Info("The CRI is off: cri.socket is empty")
		return func() {}, nil
	}
	log := a.log.WithName("cri")
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("CRI socket %s: %w", path, err)
	}
	l, err := api.ListenUnix(path, log)
	if err != nil {
		return nil, fmt.Errorf("CRI socket %s: %w", path, err)
	}
	s := criserver.New(criBackend{a}, a.opts.Version, log)
	if err := a.serveCRIStreams(s, log); err != nil {
		l.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.Serve(l); err != nil {
			log.Error(err, "CRI server stopped", "socket", path)
		}
	}()
	log.Info("Serving the Kubernetes CRI", "socket", path)
	return func() {
		s.Stop(time.Second)
		<-done
	}, nil
}

// NetworkStatus implements criserver.Backend without waiting for the
// network's set-up: until it is done the network is not ready.
func (b criBackend) NetworkStatus() (bool, string, string) {
	a := b.a
	select {
	case <-a.netReady:
	default:
		return false, "NetworkPluginNotReady", "the pod network is being set up"
	}
	if a.netw == nil {
		return false, "NetworkPluginNotReady", "pod networking is unavailable: pods have a loopback-only network (install containernetworking-plugins and restart agentd)"
	}
	return true, "", ""
}

// Images implements criserver.Backend.
func (b criBackend) Images() ([]image.Image, error) { return b.a.images.List() }

// Image implements criserver.Backend.
func (b criBackend) Image(ref string) (*image.Image, error) {
	if b.a.store == nil {
		return nil, errors.New("this agent has no image store")
	}
	return b.a.store.Get(ref)
}

// RemoveImage implements criserver.Backend: the image goes with all its names
// (the CRI's rule, unlike `agentctl image rm NAME`, which untags), unless a
// container uses it.
func (b criBackend) RemoveImage(_ context.Context, ref string) error {
	a := b.a
	img, err := b.Image(ref)
	if err != nil {
		return err
	}
	if user, used := a.imageInUse(img.ID); used {
		return fmt.Errorf("%w: image %s (%s) is in use by %s", criserver.ErrFailedPrecondition, ref, img.ID, user)
	}
	if err := a.store.Remove(img.ID); err != nil {
		return fmt.Errorf("remove image %s (%s): %w", ref, img.ID, err)
	}
	return nil
}

// ImageFs implements criserver.Backend: statfs(2) of the image store's directory.
func (b criBackend) ImageFs() (criserver.FsUsage, error) {
	if b.a.store == nil {
		return criserver.FsUsage{}, errors.New("this agent has no image store")
	}
	dir := b.a.store.Dir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return criserver.FsUsage{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return fsUsage(dir, &st), nil
}

// fsUsage is what statfs(2) says a filesystem uses.
func fsUsage(dir string, st *unix.Statfs_t) criserver.FsUsage {
	return criserver.FsUsage{
		Mountpoint: dir,
		UsedBytes:  (st.Blocks - min(st.Bfree, st.Blocks)) * uint64(st.Bsize),
		InodesUsed: st.Files - min(st.Ffree, st.Files),
	}
}
