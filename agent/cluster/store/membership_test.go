package store

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestMembershipSaveLoadRemove(t *testing.T) {
	root := t.TempDir()
	if ms, err := LoadMembership(root); ms != nil || err != nil {
		t.Fatalf("fresh root: got (%v, %v), want (nil, nil): not in a cluster", ms, err)
	}

	want := &Membership{ClusterName: "cdf818194e3a8c32", NodeName: "node-1", Member: true,
		PeerURL: "http://127.0.0.1:2380", ClientURL: "http://127.0.0.1:2379",
		Endpoints: []string{"http://127.0.0.1:2379", "http://10.1.0.2:2379"}, JoinedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := SaveMembership(root, want); err != nil {
		t.Fatal(err)
	}
	got, err := LoadMembership(root)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("loaded %+v, want %+v", got, want)
	}
	path := filepath.Join(root, "cluster", "membership.json")
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("membership file: %v, mode %v; want 0600", err, fi.Mode())
	}
	entries, _ := os.ReadDir(filepath.Join(root, "cluster"))
	if len(entries) != 1 {
		t.Fatalf("cluster dir holds %v, want only membership.json (no temporary files left)", entries)
	}

	// Overwrite: the new content replaces the old one whole.
	want.Endpoints = want.Endpoints[:1]
	if err := SaveMembership(root, want); err != nil {
		t.Fatal(err)
	}
	if got, _ := LoadMembership(root); !reflect.DeepEqual(got, want) {
		t.Fatalf("after overwrite: %+v, want %+v", got, want)
	}

	if err := RemoveMembership(root); err != nil {
		t.Fatal(err)
	}
	if ms, err := LoadMembership(root); ms != nil || err != nil {
		t.Fatalf("after remove: got (%v, %v), want (nil, nil)", ms, err)
	}
	if err := RemoveMembership(root); err != nil {
		t.Fatalf("removing twice: %v", err)
	}
}

func TestLoadMembershipNamesABrokenFile(t *testing.T) {
	for name, content := range map[string]string{
		"corrupt":    `{"nodeName": "node-1", "endp`,
		"incomplete": `{"clusterName": "x"}`,
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			path := filepath.Join(root, "cluster", "membership.json")
			os.MkdirAll(filepath.Dir(path), 0o700)
			os.WriteFile(path, []byte(content), 0o600)
			_, err := LoadMembership(root)
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "join again") {
				t.Fatalf("got %v, want an error naming %s and what to do", err, path)
			}
		})
	}
}
