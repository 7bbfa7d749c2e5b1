package supervisor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/agentd-project/agentd/agent/monitor/protocol"
)

// A journal write leaves the journal only: neither its own temporary file nor
// the fixed-name one an older monitor killed mid-write left.
func TestWriteJournalLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	legacy := filepath.Join(dir, protocol.JournalFile+".tmp")
	if err := os.WriteFile(legacy, []byte(`{"id":`), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := WriteJournal(dir, &protocol.Journal{ID: "c1", RestartCount: i}); err != nil {
			t.Fatal(err)
		}
	}
	j, err := ReadJournal(dir)
	if err != nil || j.ID != "c1" || j.RestartCount != 2 {
		t.Fatalf("ReadJournal = %+v, %v", j, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != protocol.JournalFile {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("state directory holds %q, want %s only", names, protocol.JournalFile)
	}
}
