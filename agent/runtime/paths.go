package runtime

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ErrUnsafeName is returned for an identifier that would not stay one path
// component under agentd's directories (a pod UID such as "../../x").
var ErrUnsafeName = errors.New("unsafe name")

// checkComponent proves that name, which becomes one path component under one of
// agentd's directories (run-dir/pods/<uid>, run-dir/monitors/<id>, a cgroup
// pod-<uid>, log-dir/<ns>_<pod>_<uid>/<container>), stays one: not empty, not "."
// or "..", no separator, no NUL. spec validates identifiers at the edge; this is the
// runtime's own check, so records written by an older agentd or a bug upstream
// cannot lead a create or a removal outside.
func checkComponent(what, name string) error {
	if name == "" || name == "." || !filepath.IsLocal(name) || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w: %s %q is not a single path component", ErrUnsafeName, what, name)
	}
	return nil
}

// checkCgroup proves that path, a cgroup agentd removes by path, is absolute and
// clean (so without ".."), and not the root.
func checkCgroup(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path || path == "/" {
		return fmt.Errorf("%w: cgroup %q is not a clean absolute path", ErrUnsafeName, path)
	}
	return nil
}

// checkPodNames checks every identifier of pod that names a directory or a cgroup.
func checkPodNames(pod *corev1.Pod) error {
	if err := checkComponent("pod UID", string(pod.UID)); err != nil {
		return err
	}
	for _, v := range pod.Spec.Volumes {
		if err := checkComponent("volume name", v.Name); err != nil {
			return err
		}
	}
	return nil
}
