package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// canonicalJSON re-encodes a JSON document with sorted keys and no insignificant
// space, so the hash of a manifest depends on its content, not on its formatting or
// on the Go types of the k8s.io/api version that decoded it.
func canonicalJSON(js []byte) ([]byte, error) {
	d := json.NewDecoder(bytes.NewReader(js))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// PodUID derives a static pod's UID the way kubelet does (from the manifest's content,
// its file path and the node's name), so it is stable across agent restarts and
// versions and changes whenever the content changes. It is formatted as a UUID.
func PodUID(content []byte, path, nodeName string) types.UID {
	h := sha256.New()
	h.Write(content)
	fmt.Fprintf(h, "\x00file:%s\x00host:%s", path, nodeName)
	sum := h.Sum(nil)
	x := hex.EncodeToString(sum[:16])
	return types.UID(x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32])
}

// ContainerHash is a short hash of a defaulted container's spec: when it changes, the
// container must be replaced.
func ContainerHash(c *corev1.Container) string {
	js, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("spec: a core/v1 Container cannot fail to marshal: %v", err))
	}
	sum := sha256.Sum256(js)
	return hex.EncodeToString(sum[:8])
}
