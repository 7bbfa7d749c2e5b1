package runtime

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestCheckComponent(t *testing.T) {
	for name, ok := range map[string]bool{
		"5f0c1b2e-7d1a-4c2b-9a8e-0e6f1d2c3b4a": true, "a.b": true, "uid_ctr": true, "default_p_u": true,
		"": false, ".": false, "..": false, "../x": false, "a/b": false, "/abs": false, "a\x00b": false, "a/..": false,
	} {
		err := checkComponent("name", name)
		if (err == nil) != ok {
			t.Errorf("checkComponent(%q) = %v, want ok=%v", name, err, ok)
		}
		if err != nil && !errors.Is(err, ErrUnsafeName) {
			t.Errorf("checkComponent(%q): not ErrUnsafeName: %v", name, err)
		}
	}
}

func TestCheckCgroup(t *testing.T) {
	for path, ok := range map[string]bool{
		"/agent/pod-x/c": true, "/agent": true,
		"/": false, "agent/pod-x": false, "/agent/pod-../../x": false, "/agent/../x": false, "/agent/": false, "": false,
	} {
		if err := checkCgroup(path); (err == nil) != ok {
			t.Errorf("checkCgroup(%q) = %v, want ok=%v", path, err, ok)
		}
	}
}

// A pod whose UID or volume name would lead out of agentd's directories gets no
// container config (and so no log directory, cgroup or monitor).
func TestContainerConfigRefusesUnsafeNames(t *testing.T) {
	for name, pod := range map[string]*corev1.Pod{
		"uid":    {ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "../../x"}},
		"volume": {ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{{Name: "../v"}}}},
		"name":   {ObjectMeta: metav1.ObjectMeta{Name: "../p", Namespace: "default", UID: "u"}},
	} {
		c := &corev1.Container{Name: "c", Image: "i", Command: []string{"true"}}
		pod.Spec.Containers = []corev1.Container{*c}
		_, err := ContainerConfig(pod, c, false, &Image{Layers: []string{"/l"}}, &Sandbox{Volumes: map[string]string{}}, &Settings{RunDir: "/run/agent", LogDir: "/var/log/pods", CgroupParent: "/agent"})
		if !errors.Is(err, ErrUnsafeName) {
			t.Errorf("%s: ContainerConfig = %v, want ErrUnsafeName", name, err)
		}
	}
}
