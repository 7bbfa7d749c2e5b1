package store

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func daemonSet(name, image string) *appsv1.DaemonSet {
	labels := map[string]string{"app": name}
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: image}}},
			},
		},
	}
}

// nextEvent waits for one watch event.
func nextEvent(t *testing.T, ch <-chan DaemonSetEvent) DaemonSetEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(30 * time.Second):
		t.Fatal("no watch event within 30s")
	}
	panic("unreachable")
}

func TestDaemonSetPutGetListWatchDelete(t *testing.T) {
	log := testLog(t)
	n := initNode(t, log)
	c := connect(t, log, n.m.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// From the revision of an (empty) list on: a watch "from now" (0) starts when its stream is set up, which can be
	// after the first put.
	_, rev0, err := c.ListDaemonSets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watch := c.WatchDaemonSets(ctx, rev0+1)

	created, err := c.PutDaemonSet(ctx, daemonSet("logs", "busybox:1.36"))
	if err != nil {
		t.Fatal(err)
	}
	if created.Namespace != "default" || created.Generation != 1 || created.UID == "" || created.CreationTimestamp.IsZero() ||
		created.ResourceVersion == "" || created.APIVersion != "apps/v1" || created.Kind != "DaemonSet" {
		t.Fatalf("created: %+v, want namespace default, generation 1, uid, creationTimestamp, resourceVersion, apps/v1 DaemonSet", created.ObjectMeta)
	}
	got, err := c.GetDaemonSet(ctx, "default", "logs")
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != created.UID || got.ResourceVersion != created.ResourceVersion || got.Spec.Template.Spec.Containers[0].Image != "busybox:1.36" {
		t.Fatalf("get: %+v, want what put returned", got)
	}

	// A metadata-only change is stored but is not a new generation.
	relabeled := daemonSet("logs", "busybox:1.36")
	relabeled.Labels = map[string]string{"app": "logs", "tier": "node"}
	second, err := c.PutDaemonSet(ctx, relabeled)
	if err != nil {
		t.Fatal(err)
	}
	if second.Generation != 1 || second.UID != created.UID || !second.CreationTimestamp.Equal(&created.CreationTimestamp) ||
		second.ResourceVersion == created.ResourceVersion || second.Labels["tier"] != "node" {
		t.Fatalf("after a label change: %+v, want generation 1, same uid and creation time, new resourceVersion", second.ObjectMeta)
	}

	// A template change is.
	third, err := c.PutDaemonSet(ctx, daemonSet("logs", "busybox:1.37"))
	if err != nil {
		t.Fatal(err)
	}
	if third.Generation != 2 || third.UID != created.UID {
		t.Fatalf("after an image change: generation %d uid %s, want 2 and %s", third.Generation, third.UID, created.UID)
	}

	// Optimistic concurrency: a write based on an old version is refused.
	stale := daemonSet("logs", "busybox:1.38")
	stale.ResourceVersion = created.ResourceVersion
	if _, err := c.PutDaemonSet(ctx, stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("put with stale resourceVersion: %v, want ErrConflict", err)
	}

	other := daemonSet("metrics", "prom/node-exporter:v1.8.0")
	other.Namespace = "monitoring"
	if _, err := c.PutDaemonSet(ctx, other); err != nil {
		t.Fatal(err)
	}
	list, rev, err := c.ListDaemonSets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Namespace+"/"+list[0].Name != "default/logs" || list[1].Namespace+"/"+list[1].Name != "monitoring/metrics" ||
		list[0].Generation != 2 {
		t.Fatalf("list: %+v", list)
	}
	if rv, _ := strconv.ParseInt(list[1].ResourceVersion, 10, 64); rev < rv {
		t.Fatalf("list revision %d older than an item's resourceVersion %d", rev, rv)
	}

	if _, err := c.PutDaemonSet(ctx, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "Bad_Name"}}); err == nil {
		t.Fatal("put accepted an invalid name")
	}

	// Reports and slots go with the DaemonSet.
	stop, err := c.RegisterNode(ctx, Node{Name: "node-1"}, testTTL)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if err := c.ReportDSPod(ctx, "default", "logs", DSPodStatus{Node: "node-1", TemplateHash: "abc", Running: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteDaemonSet(ctx, "default", "logs"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetDaemonSet(ctx, "default", "logs"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	if err := c.DeleteDaemonSet(ctx, "default", "logs"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v, want ErrNotFound", err)
	}
	if pods, _ := c.DSPods(ctx, "default", "logs"); len(pods) != 0 {
		t.Fatalf("pod reports outlived their daemonset: %+v", pods)
	}

	// The watch saw every change, in order.
	for i, want := range []struct {
		typ        EventType
		name       string
		generation int64
		image      string
	}{
		{EventPut, "logs", 1, "busybox:1.36"},
		{EventPut, "logs", 1, "busybox:1.36"},
		{EventPut, "logs", 2, "busybox:1.37"},
		{EventPut, "metrics", 1, "prom/node-exporter:v1.8.0"},
		{EventDelete, "logs", 2, "busybox:1.37"},
	} {
		ev := nextEvent(t, watch)
		if ev.Type != want.typ || ev.DaemonSet.Name != want.name || ev.DaemonSet.Generation != want.generation ||
			ev.DaemonSet.Spec.Template.Spec.Containers[0].Image != want.image || ev.Revision == 0 {
			t.Fatalf("event %d: %s %s gen %d rev %d, want %s %s gen %d %s", i, ev.Type, ev.DaemonSet.Name,
				ev.DaemonSet.Generation, ev.Revision, want.typ, want.name, want.generation, want.image)
		}
	}

	// Watching from a past revision replays from there.
	from, _ := strconv.ParseInt(third.ResourceVersion, 10, 64)
	replay := c.WatchDaemonSets(ctx, from)
	if ev := nextEvent(t, replay); ev.Type != EventPut || ev.DaemonSet.Generation != 2 || ev.DaemonSet.ResourceVersion != third.ResourceVersion {
		t.Fatalf("replay from %d: %+v", from, ev)
	}

	// History compacted away: the watch says so with a full list instead of failing.
	if _, err := c.cli.Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	resync := c.WatchDaemonSets(ctx, from)
	ev := nextEvent(t, resync)
	if ev.Type != EventResync || len(ev.All) != 1 || ev.All[0].Name != "metrics" || ev.Revision < rev {
		t.Fatalf("watch from compacted revision %d: %s with %d items at %d, want Resync with [metrics]", from, ev.Type, len(ev.All), ev.Revision)
	}
	if _, err := c.PutDaemonSet(ctx, daemonSet("after", "busybox:1.37")); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, resync); ev.Type != EventPut || ev.DaemonSet.Name != "after" {
		t.Fatalf("after the resync: %+v, want Put of after", ev)
	}

	cancel()
	for range watch { // closed once ctx ends
	}
}
