package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// podList is a v1 PodList as a manifest file holds it; its items are decoded one
// by one, each as strictly as a Pod file.
type podList struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ListMeta   `json:"metadata,omitempty"`
	Items           []json.RawMessage `json:"items"`
}

// ParseFile parses a manifest file: one Pod (as Parse does), or a v1 PodList
// whose items are each a pod of their own, as kubelet's file source accepts. An
// item may leave out kind and apiVersion. A bad item makes the whole file
// invalid, and its errors name it: `items[1].spec.containers[0].image: ...`.
func ParseFile(data []byte, src Source) ([]*corev1.Pod, error) {
	if len(data) > MaxManifestSize {
		return nil, ErrTooLarge
	}
	// The document is made JSON once, for the kind and then the decoding (a
	// Pod's errors name a Pod).
	js, err := documentJSON(data, "Pod")
	if err != nil {
		return nil, err
	}
	if kind, _ := jsonKind(js); kind != "PodList" {
		pod, err := parseJSON(js, src)
		if err != nil {
			return nil, err
		}
		return []*corev1.Pod{pod}, nil
	}
	var list podList
	if err := decodeStrictJSON(js, "PodList", "v1", &list); err != nil {
		return nil, err
	}
	var pods []*corev1.Pod
	var errs field.ErrorList
	seen := map[string]int{}
	for i, raw := range list.Items {
		prefix := "items[" + strconv.Itoa(i) + "]"
		pod, err := Parse(withPodType(raw), src)
		if err != nil {
			if list := ErrorList(err); list != nil {
				for _, fe := range list {
					c := *fe
					c.Field = joinField(prefix, fe.Field)
					errs = append(errs, &c)
				}
				continue
			}
			return nil, fmt.Errorf("%s: %w", prefix, err)
		}
		key := pod.Namespace + "/" + pod.Name
		if j, dup := seen[key]; dup {
			errs = append(errs, field.Duplicate(field.NewPath("items").Index(i).Child("metadata", "name"),
				fmt.Sprintf("%s (as items[%d])", key, j)))
			continue
		}
		seen[key] = i
		pods = append(pods, pod)
	}
	if len(errs) > 0 {
		return nil, fieldErrors(errs)
	}
	if len(pods) == 0 {
		return nil, fieldErrors(field.ErrorList{field.Required(field.NewPath("items"), "a PodList needs at least one pod")})
	}
	return pods, nil
}

func joinField(prefix, f string) string {
	if f == "" || f == "<nil>" {
		return prefix
	}
	return prefix + "." + f
}

// jsonKind is the kind of a document documentJSON gave, or "" when it does not
// read; the strict decode that follows reports what is wrong.
func jsonKind(js []byte) (string, error) {
	var tm metav1.TypeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return "", err
	}
	return tm.Kind, nil
}

// withPodType adds kind: Pod and apiVersion: v1 to an item that leaves them out
// (a PodList's items may); an item that gives them keeps its own, checked as a
// Pod file's are.
func withPodType(raw json.RawMessage) []byte {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return raw // not an object: Parse says so
	}
	var add []string
	if _, ok := fields["apiVersion"]; !ok {
		add = append(add, `"apiVersion":"v1"`)
	}
	if _, ok := fields["kind"]; !ok {
		add = append(add, `"kind":"Pod"`)
	}
	if len(add) == 0 {
		return raw
	}
	body := bytes.TrimSpace(raw)[1:] // after '{'
	out := []byte("{" + strings.Join(add, ","))
	if len(bytes.TrimSpace(body)) > 1 { // not "}"
		out = append(out, ',')
	}
	return append(out, body...)
}
