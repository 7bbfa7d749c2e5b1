package spec

import (
	"fmt"
	"sort"
	"strings"
)

// FieldDocs renders SupportedFields as the Markdown page docs/manifest-fields.md.
func FieldDocs() string {
	var b strings.Builder
	b.WriteString(`# Pod manifest fields agentd supports

Generated from ` + "`spec.SupportedFields`" + ` by ` + "`make docs`" + `; do not edit by hand.

agentd reads core/v1 Pods (` + "`apiVersion: v1`, `kind: Pod`" + `), one per file, YAML or JSON, at most 10 MiB;
a file may also hold a ` + "`v1` `PodList`" + ` whose ` + "`items`" + ` are pods of their own (as kubelet's file source accepts), and
errors in an item name it (` + "`items[1].spec...`" + `).
A field that is not listed here (nor under a listed parent) is refused with
` + "`<path>: not supported by agentd`" + `, and a misspelled field with ` + "`<path>: unknown field`" + `:
agentd never silently ignores what a manifest asks for. All errors of a file are reported at once.

Defaults are kubelet's: namespace ` + "`default`" + `, restartPolicy ` + "`Always`" + `, terminationGracePeriodSeconds 30,
dnsPolicy ` + "`ClusterFirst`" + `, imagePullPolicy ` + "`Always`" + ` for ` + "`:latest`" + ` or no tag and ` + "`IfNotPresent`" + ` otherwise,
probes timeout 1 s, period 10 s, success 1, failure 3; resource requests default to the limits;
a volume with no source is an ` + "`emptyDir`" + `.

| field | notes |
|---|---|
`)
	for _, f := range supportedPaths() {
		fmt.Fprintf(&b, "| `%s` | %s |\n", f.Path, f.Note)
	}
	b.WriteString(`
## Refused, as kubelet refuses them for static pods

These are refused with the reason below (` + "`<path>: not supported by agentd: <reason>`" + `).

| field | why |
|---|---|
`)
	notes := refusedNotes()
	paths := make([]string, 0, len(notes))
	for p := range notes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		fmt.Fprintf(&b, "| `%s` | %s |\n", p, notes[p])
	}
	return b.String()
}
