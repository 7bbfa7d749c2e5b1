package printers

import (
	"bytes"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDescribeNode(t *testing.T) {
	created := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{"kubernetes.io/os": "linux", "zone": "a"},
			CreationTimestamp: metav1.NewTime(created)},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown",
				Message: "agentd stopped renewing the node's lease", LastHeartbeatTime: metav1.NewTime(created.Add(time.Hour))}},
			NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.2.3", OperatingSystem: "linux", Architecture: "amd64"},
		},
	}
	var b bytes.Buffer
	if err := DescribeNode(&b, n, created.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got := words(b.String())
	for _, want := range []string{
		"Name: node-1 Roles: <none> Labels: kubernetes.io/os=linux zone=a",
		"Ready Unknown Sun, 01 Mar 2026 11:00:00 +0000 NodeStatusUnknown agentd stopped renewing the node's lease",
		"Kubelet Version: v1.2.3",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("describe node lacks %q:\n%s", want, b.String())
		}
	}
}

func TestDescribeDaemonSet(t *testing.T) {
	ds := printFixtures(t)[0]
	var b bytes.Buffer
	if err := DescribeDaemonSet(&b, &ds, dsPrintNow); err != nil {
		t.Fatal(err)
	}
	got := words(b.String())
	for _, want := range []string{
		"Name: node-logger Namespace: kube-system Selector: app=node-logger",
		"Desired Number of Nodes Scheduled: 3 Current Number of Nodes Scheduled: 3 Number of Nodes Scheduled with Up-to-date Pods: 1",
		"Pods Status: 2 Ready / 1 Not Ready Update Strategy: RollingUpdate (maxUnavailable: 25%) Pod Template:",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("describe daemonset lacks %q:\n%s", want, b.String())
		}
	}
}

// words is s with every run of white space as one space, for checks that do not depend on column widths.
func words(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestDescribeDaemonSetIndentsTheTemplate: the template's containers sit one level in, under "Containers:".
func TestDescribeDaemonSetIndentsTheTemplate(t *testing.T) {
	ds := printFixtures(t)[0]
	var b bytes.Buffer
	if err := DescribeDaemonSet(&b, &ds, dsPrintNow); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "\n  Containers:\n   logger:\n") && !strings.Contains(b.String(), "\n  Containers:\n    logger:\n") {
		t.Errorf("template containers not indented:\n%s", b.String())
	}
}
