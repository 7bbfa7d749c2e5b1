// Command gendocs writes the generated documentation files (make docs):
// docs/manifest-fields.md from spec.SupportedFields, docs/daemonset-fields.md from
// daemonset.SupportedFields and manifests/config.example.json from config.Example.
package main

import (
	"fmt"
	"os"

	"github.com/agentd-project/agentd/agent/cluster/daemonset"
	"github.com/agentd-project/agentd/agent/config"
	"github.com/agentd-project/agentd/spec"
)

func main() {
	for path, content := range map[string]string{
		"docs/manifest-fields.md":       spec.FieldDocs(),
		"docs/daemonset-fields.md":      daemonset.FieldDocs(),
		"manifests/config.example.json": config.Example,
	} {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "gendocs:", err, "(run from the repository root: make docs)")
			os.Exit(1)
		}
	}
}
