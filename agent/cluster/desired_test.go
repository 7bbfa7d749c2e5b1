package cluster

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/agentd-project/agentd/agent/cluster/admission"
	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/spec"
)

// TestDesiredCacheRunsOnlyWhatPassesAgain: the cache of cluster pods hands back, at a start without etcd, only the
// pods that are this node's, made from a DaemonSet, valid, and within the recorded Pod Security level.
func TestDesiredCacheRunsOnlyWhatPassesAgain(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "cluster"), 0o700); err != nil {
		t.Fatal(err)
	}
	h := &host{ready: map[types.UID]bool{}}
	n := New(Config{Root: root, NodeName: "node-1", Host: h, Log: logr.Discard()})
	pod := func(name, node string, fromDS bool, mutate func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name + "-uid"), Annotations: map[string]string{}},
			Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "localhost/busybox"}}}}
		if fromDS {
			p.Annotations[daemonset.AnnotationDaemonSet] = "default/" + name
		}
		if mutate != nil {
			mutate(p)
		}
		spec.SetDefaults(p)
		return p
	}
	yes := true
	n.saveDesired(admission.Baseline, []*corev1.Pod{
		pod("good", "node-1", true, nil),
		pod("other-node", "node-2", true, nil),
		pod("static", "node-1", false, nil),
		pod("privileged", "node-1", true, func(p *corev1.Pod) {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: &yes}
		}),
		pod("bad-name", "node-1", true, func(p *corev1.Pod) { p.Spec.Containers[0].Name = "../x" }),
	})
	n.restoreDesired()
	var got []string
	for name := range h.pods() {
		got = append(got, name)
	}
	sort.Strings(got)
	if len(got) != 1 || got[0] != "good" {
		t.Fatalf("restored %v, want only [good]", got)
	}

	// A cache that does not decode runs nothing; leaving the cluster deletes it.
	if err := os.WriteFile(n.desiredPath(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	h2 := &host{ready: map[types.UID]bool{}}
	n2 := New(Config{Root: root, NodeName: "node-1", Host: h2, Log: logr.Discard()})
	n2.restoreDesired()
	if len(h2.pods()) != 0 {
		t.Fatalf("a broken cache ran %v", h2.pods())
	}
	n2.removeDesired()
	if _, err := os.Stat(n.desiredPath()); !os.IsNotExist(err) {
		t.Fatalf("cache after removeDesired: %v", err)
	}
}
