package daemonset

import (
	"fmt"
	"strings"
)

// FieldDocs renders docs/daemonset-fields.md from SupportedFields (make docs).
func FieldDocs() string {
	var b strings.Builder
	b.WriteString(`# DaemonSet manifest fields agentd supports

Generated from ` + "`daemonset.SupportedFields`" + ` by ` + "`make docs`" + `; do not edit by hand.

In cluster mode ` + "`agentctl apply -f FILE`" + ` takes ` + "`apps/v1`" + ` DaemonSets, YAML or JSON (several documents separated by
` + "`---`" + `). Every node whose labels match ` + "`spec.template.spec.nodeSelector`" + ` runs one pod of it, named
` + "`<daemonset>-<node>`" + `. As for pods, a field that is not listed here is refused with ` + "`<path>: not supported by agentd`" + `
and a misspelled one with ` + "`<path>: unknown field`" + `.

The pod template (` + "`spec.template`" + `) takes ` + "`metadata.labels`" + ` and ` + "`metadata.annotations`" + `, every field of
[manifest-fields.md](manifest-fields.md) under ` + "`spec.template.spec`" + `, and ` + "`spec.template.spec.nodeSelector`" + `; its
` + "`restartPolicy`" + ` must be ` + "`Always`" + `, as Kubernetes requires of DaemonSets.

| field | notes |
|---|---|
`)
	for _, f := range SupportedFields {
		fmt.Fprintf(&b, "| `%s` | %s |\n", f.Path, f.Note)
	}
	return b.String()
}
