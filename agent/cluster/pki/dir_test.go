package pki

import (
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func dirNames(t *testing.T, d Dir) []string {
	t.Helper()
	entries, err := os.ReadDir(string(d))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestDirRoundTrip(t *testing.T) {
	d := Dir(filepath.Join(t.TempDir(), "cluster", "pki"))
	ca := newTestCA(t, testNow)
	node, nodeKey := issue(t, ca, Request{CommonName: NodeCN("n1"), Usage: UsageClientServer}, testNow)

	if d.Exists(CACertFile) {
		t.Fatal("Exists before any write")
	}
	if err := d.WritePair(CACertFile, CAKeyFile, ca.Cert, ca.Key); err != nil {
		t.Fatal(err)
	}
	if err := d.WritePair(NodeCertFile, NodeKeyFile, node, nodeKey); err != nil {
		t.Fatal(err)
	}
	if got, want := d.Path(NodeKeyFile), filepath.Join(string(d), "node.key"); got != want {
		t.Errorf("Path = %s, want %s", got, want)
	}
	for name, want := range map[string]fs.FileMode{
		"":           0o700,
		CACertFile:   0o644,
		CAKeyFile:    0o600,
		NodeCertFile: 0o644,
		NodeKeyFile:  0o600,
	} {
		if got := fileMode(t, d.Path(name)); got != want {
			t.Errorf("%s has mode %04o, want %04o", d.Path(name), got, want)
		}
	}
	// Nothing else: no temporary files left behind.
	if got, want := dirNames(t, d), []string{CACertFile, CAKeyFile, NodeCertFile, NodeKeyFile}; !slices.Equal(got, want) {
		t.Errorf("the directory holds %v, want %v", got, want)
	}
	if !d.Exists(NodeCertFile) || d.Exists(PeerCertFile) {
		t.Errorf("Exists(node.crt)=%v Exists(peer.crt)=%v", d.Exists(NodeCertFile), d.Exists(PeerCertFile))
	}

	gotCert, gotKey, err := d.LoadPair(NodeCertFile, NodeKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !gotCert.Equal(node) || keyMatches(node, gotKey) != nil {
		t.Error("LoadPair returned another pair than WritePair wrote")
	}
	gotCA, err := d.LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	if !gotCA.Cert.Equal(ca.Cert) || gotCA.Key == nil {
		t.Fatalf("LoadCA = %+v, want the CA with its key", gotCA)
	}
	if _, err := gotCA.Issue(Request{CommonName: "x", PublicKey: nodeKey.Public()}, testNow); err != nil {
		t.Errorf("the loaded CA cannot sign: %v", err)
	}

	// A node that has only the CA certificate.
	if err := os.Remove(d.Path(CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	gotCA, err = d.LoadCA()
	if err != nil {
		t.Fatal(err)
	}
	if gotCA.Key != nil || !gotCA.Cert.Equal(ca.Cert) {
		t.Errorf("LoadCA without ca.key = %+v, want the certificate and no key", gotCA)
	}
	if c, err := d.LoadCert(CACertFile); err != nil || !c.Equal(ca.Cert) {
		t.Errorf("LoadCert = %v", err)
	}
}

func TestDirWriteMakesDirectoryPrivate(t *testing.T) {
	d := Dir(t.TempDir())
	if err := os.Chmod(string(d), 0o755); err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t, testNow)
	if err := d.WriteCert(CACertFile, ca.Cert); err != nil {
		t.Fatal(err)
	}
	if got := fileMode(t, string(d)); got != 0o700 {
		t.Errorf("the PKI directory has mode %04o after a write, want 0700", got)
	}
}

func TestDirRefusals(t *testing.T) {
	ca := newTestCA(t, testNow)
	other := newTestCA(t, testNow)
	node, nodeKey := issue(t, ca, Request{CommonName: NodeCN("n1")}, testNow)
	renewed, _ := issue(t, ca, Request{CommonName: NodeCN("n1")}, testNow)

	setup := func(t *testing.T) Dir {
		d := Dir(t.TempDir())
		if err := d.WritePair(CACertFile, CAKeyFile, ca.Cert, ca.Key); err != nil {
			t.Fatal(err)
		}
		if err := d.WritePair(NodeCertFile, NodeKeyFile, node, nodeKey); err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, d Dir)
		load  func(d Dir) error
		want  string
	}{
		{
			name:  "group-readable key",
			spoil: func(t *testing.T, d Dir) { chmod(t, d.Path(NodeKeyFile), 0o640) },
			load:  loadNodePair,
			want:  "chmod 600",
		},
		{
			name:  "other-readable CA key",
			spoil: func(t *testing.T, d Dir) { chmod(t, d.Path(CAKeyFile), 0o604) },
			load:  func(d Dir) error { _, err := d.LoadCA(); return err },
			want:  "chmod 600",
		},
		{
			name:  "group-writable key",
			spoil: func(t *testing.T, d Dir) { chmod(t, d.Path(NodeKeyFile), 0o620) },
			load:  loadNodePair,
			want:  "mode 0620",
		},
		{
			name: "key owned by another user",
			spoil: func(t *testing.T, d Dir) {
				if os.Geteuid() != 0 {
					t.Skip("chown to another user needs root")
				}
				if err := os.Chown(d.Path(NodeKeyFile), 65534, 65534); err != nil {
					t.Fatal(err)
				}
			},
			load: loadNodePair,
			want: "owned by uid 65534",
		},
		{
			name: "certificate renewed, key not",
			spoil: func(t *testing.T, d Dir) {
				if err := d.WriteCert(NodeCertFile, renewed); err != nil {
					t.Fatal(err)
				}
			},
			load: loadNodePair,
			want: "do not go together",
		},
		{
			name: "CA key of another CA",
			spoil: func(t *testing.T, d Dir) {
				if err := d.WritePair(CACertFile, CAKeyFile, other.Cert, other.Key); err != nil {
					t.Fatal(err)
				}
				if err := d.WriteCert(CACertFile, ca.Cert); err != nil {
					t.Fatal(err)
				}
			},
			load: func(d Dir) error { _, err := d.LoadCA(); return err },
			want: "is not the key of",
		},
		{
			name: "ca.crt is a leaf",
			spoil: func(t *testing.T, d Dir) {
				if err := d.WriteCert(CACertFile, node); err != nil {
					t.Fatal(err)
				}
			},
			load: func(d Dir) error { _, err := d.LoadCA(); return err },
			want: "not a CA certificate",
		},
		{
			name: "a directory where the key should be",
			spoil: func(t *testing.T, d Dir) {
				if err := os.Remove(d.Path(NodeKeyFile)); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(d.Path(NodeKeyFile), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			load: loadNodePair,
			want: "not a regular file",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := setup(t)
			tc.spoil(t, d)
			err := tc.load(d)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("load = %v, want an error containing %q", err, tc.want)
			}
		})
	}

	t.Run("missing", func(t *testing.T) {
		d := Dir(t.TempDir())
		if _, err := d.LoadCA(); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LoadCA of an empty directory = %v, want fs.ErrNotExist", err)
		}
		if _, _, err := d.LoadPair(NodeCertFile, NodeKeyFile); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("LoadPair of an empty directory = %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("WritePair with another key", func(t *testing.T) {
		d := Dir(t.TempDir())
		if err := d.WritePair(NodeCertFile, NodeKeyFile, node, ca.Key); err == nil {
			t.Fatal("WritePair accepted a key that is not the certificate's")
		}
		if names := dirNames(t, d); len(names) != 0 {
			t.Errorf("a refused WritePair wrote %v", names)
		}
	})
}

func loadNodePair(d Dir) error {
	_, _, err := d.LoadPair(NodeCertFile, NodeKeyFile)
	return err
}

func chmod(t *testing.T, path string, mode fs.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func TestCombinedFileRoundTripsAndIsPrivate(t *testing.T) {
	d := Dir(t.TempDir())
	ca, err := NewCA("", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue(Request{CommonName: NodeCN("node-1"), Usage: UsageClientServer, PublicKey: key.Public()}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.WriteCombined(NodeFile, c, key); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(d.Path(NodeFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", NodeFile, err, fi.Mode())
	}
	gotCert, gotKey, err := d.LoadCombined(NodeFile)
	if err != nil || !gotCert.Equal(c) || keyMatches(gotCert, gotKey) != nil {
		t.Fatalf("LoadCombined: %v", err)
	}
	// etcd and Go's TLS read the same file as certificate and key.
	if _, err := tls.LoadX509KeyPair(d.Path(NodeFile), d.Path(NodeFile)); err != nil {
		t.Fatalf("tls.LoadX509KeyPair of the combined file: %v", err)
	}
	other, _ := NewKey()
	if err := d.WriteCombined(NodeFile, c, other); err == nil {
		t.Fatal("WriteCombined took a key that is not the certificate's")
	}
}
