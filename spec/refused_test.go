package spec

import (
	"strings"
	"testing"
)

// What kubelet refuses for static pods stays refused, each with its field path
// and a sentence saying why, and nothing else is reported for it.
func TestRefusedWithReason(t *testing.T) {
	cases := []struct{ name, manifest, want string }{
		{"configMap volume", base + "  volumes: [{name: v, configMap: {name: x}}]\n",
			"spec.volumes[0].configMap: not supported by agentd: a static pod cannot refer to API objects (kubelet refuses its mirror pod too); put the files on the node and mount them with a hostPath volume"},
		{"secret volume", base + "  volumes: [{name: v, secret: {secretName: x}}]\n", "spec.volumes[0].secret: not supported by agentd: a static pod cannot refer to API objects"},
		{"pvc", base + "  volumes: [{name: v, persistentVolumeClaim: {claimName: x}}]\n", "spec.volumes[0].persistentVolumeClaim: not supported by agentd: a static pod cannot refer to API objects"},
		{"projected token", base + "  volumes: [{name: v, projected: {sources: [{serviceAccountToken: {path: t}}]}}]\n",
			"spec.volumes[0].projected.sources[0].serviceAccountToken: not supported by agentd: a static pod has no service account"},
		{"projected secret", base + "  volumes: [{name: v, projected: {sources: [{secret: {name: s}}]}}]\n", "spec.volumes[0].projected.sources[0].secret: not supported by agentd: a static pod cannot refer to API objects"},
		{"envFrom", base + "    envFrom: [{configMapRef: {name: x}}]\n", "spec.containers[0].envFrom: not supported by agentd: a static pod cannot refer to API objects (kubelet refuses its mirror pod too); set env values"},
		{"secretKeyRef", base + "    env: [{name: X, valueFrom: {secretKeyRef: {name: s, key: k}}}]\n", "spec.containers[0].env[0].valueFrom.secretKeyRef: not supported by agentd: a static pod cannot refer to API objects"},
		{"configMapKeyRef in an init container", base + "  initContainers: [{name: i, image: localhost/busybox, env: [{name: X, valueFrom: {configMapKeyRef: {name: s, key: k}}}]}]\n",
			"spec.initContainers[0].env[0].valueFrom.configMapKeyRef: not supported by agentd: a static pod cannot refer to API objects"},
		{"serviceAccountName", base + "  serviceAccountName: default\n", "spec.serviceAccountName: not supported by agentd: a static pod has no service account"},
		{"automount token", base + "  automountServiceAccountToken: true\n", "spec.automountServiceAccountToken: not supported by agentd: a static pod has no service account"},
		{"imagePullSecrets", base + "  imagePullSecrets: [{name: x}]\n", "spec.imagePullSecrets: not supported by agentd: a static pod cannot refer to API objects (kubelet refuses its mirror pod too); give registry credentials"},
		{"ephemeral containers", base + "  ephemeralContainers: [{name: e, image: localhost/busybox}]\n", "spec.ephemeralContainers: not supported by agentd: ephemeral containers are added through the API server"},
		{"resource claims", base + "  resourceClaims: [{name: x}]\n", "spec.resourceClaims: not supported by agentd: a static pod cannot refer to API objects"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.manifest), Source{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error = %v\nwant it to contain %s", err, c.want)
			}
			if n := len(ErrorList(err)); n != 1 {
				t.Errorf("%d errors, want only the refusal: %v", n, err)
			}
		})
	}
}
