package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
)

// Dir is a node's PKI directory, <root>/cluster/pki: mode 0700, keys 0600,
// certificates 0644. Every write replaces its file atomically, so a crash
// leaves the old file or the new one.
type Dir string

// The files of a Dir.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
	// NodeFile, PeerFile and JoinFile hold a certificate and its key in one file (WriteCombined): etcd reads its
	// certificate and key at every handshake, so a renewal must replace both in one rename.
	NodeFile = "node.pem"
	PeerFile = "peer.pem"
	JoinFile = "join.pem"

	NodeCertFile = "node.crt"
	NodeKeyFile  = "node.key"
	PeerCertFile = "peer.crt"
	PeerKeyFile  = "peer.key"
)

// File modes.
const (
	dirMode  fs.FileMode = 0o700
	keyMode  fs.FileMode = 0o600
	certMode fs.FileMode = 0o644
)

// maxFileSize bounds what Dir and LoadCredential read: PEM files of a few
// certificates and keys are a few kilobytes.
const maxFileSize = 1 << 20

// Path is the path of the file name in d.
func (d Dir) Path(name string) string { return filepath.Join(string(d), name) }

// Exists says whether d has a file name.
func (d Dir) Exists(name string) bool {
	_, err := os.Lstat(d.Path(name))
	return err == nil
}

// WritePair writes k to keyName, then c to certName: a crash between the two
// leaves a new key with an old certificate, which LoadPair refuses, rather than
// a new certificate whose key is lost.
func (d Dir) WritePair(certName, keyName string, c *x509.Certificate, k crypto.Signer) error {
	if err := keyMatches(c, k); err != nil {
		return fmt.Errorf("writing %s and %s: %w", d.Path(certName), d.Path(keyName), err)
	}
	keyPEM, err := EncodeKey(k)
	if err != nil {
		return fmt.Errorf("writing %s: %w", d.Path(keyName), err)
	}
	if err := d.ensure(); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(d.Path(keyName), keyPEM, keyMode); err != nil {
		return fmt.Errorf("writing the private key %s: %w", d.Path(keyName), err)
	}
	return d.WriteCert(certName, c)
}

// WriteCombined writes c and k into one private file name, replaced whole in one rename: a reader (etcd reads its
// files at every handshake) or a crash sees the old pair or the new one, never a mix. Both tls.X509KeyPair and
// LoadCombined read it, given the same file as certificate and key.
func (d Dir) WriteCombined(name string, c *x509.Certificate, k crypto.Signer) error {
	if err := keyMatches(c, k); err != nil {
		return fmt.Errorf("writing %s: %w", d.Path(name), err)
	}
	keyPEM, err := EncodeKey(k)
	if err != nil {
		return fmt.Errorf("writing %s: %w", d.Path(name), err)
	}
	if err := d.ensure(); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(d.Path(name), append(EncodeCert(c), keyPEM...), keyMode); err != nil {
		return fmt.Errorf("writing the certificate and key %s: %w", d.Path(name), err)
	}
	return nil
}

// LoadCombined reads a file WriteCombined wrote (private, as for LoadPair) and checks that the key is the
// certificate's.
func (d Dir) LoadCombined(name string) (*x509.Certificate, crypto.Signer, error) {
	data, err := readFile(d.Path(name), true)
	if err != nil {
		return nil, nil, err
	}
	certPEM, keyPEM := splitCombined(data)
	c, err := ParseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", d.Path(name), err)
	}
	k, err := ParseKey(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", d.Path(name), err)
	}
	if err := keyMatches(c, k); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", d.Path(name), err)
	}
	return c, k, nil
}

// splitCombined separates a combined file's CERTIFICATE block from its key block.
func splitCombined(data []byte) (certPEM, keyPEM []byte) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return certPEM, keyPEM
		}
		if b.Type == "CERTIFICATE" {
			certPEM = append(certPEM, pem.EncodeToMemory(b)...)
		} else {
			keyPEM = append(keyPEM, pem.EncodeToMemory(b)...)
		}
	}
}

// WriteCert writes c to name.
func (d Dir) WriteCert(name string, c *x509.Certificate) error {
	if err := d.ensure(); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(d.Path(name), EncodeCert(c), certMode); err != nil {
		return fmt.Errorf("writing the certificate %s: %w", d.Path(name), err)
	}
	return nil
}

// ensure makes d, mode 0700, and sets that mode if d exists: only root looks
// into a node's PKI directory.
func (d Dir) ensure() error {
	if err := os.MkdirAll(string(d), dirMode); err != nil {
		return fmt.Errorf("creating the PKI directory: %w", err)
	}
	if err := os.Chmod(string(d), dirMode); err != nil {
		return fmt.Errorf("making the PKI directory private: %w", err)
	}
	return nil
}

// LoadCert reads the certificate name.
func (d Dir) LoadCert(name string) (*x509.Certificate, error) {
	data, err := readFile(d.Path(name), false)
	if err != nil {
		return nil, err
	}
	c, err := ParseCert(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Path(name), err)
	}
	return c, nil
}

// LoadPair reads a certificate and its key, and checks that the key is the
// certificate's. The key file must be private: no access for group or others
// (chmod 600), owned by the effective user.
func (d Dir) LoadPair(certName, keyName string) (*x509.Certificate, crypto.Signer, error) {
	c, err := d.LoadCert(certName)
	if err != nil {
		return nil, nil, err
	}
	k, err := d.loadKey(keyName)
	if err != nil {
		return nil, nil, err
	}
	if err := keyMatches(c, k); err != nil {
		return nil, nil, fmt.Errorf("%s and %s do not go together (a renewal that crashed between writing them?): %w", d.Path(keyName), d.Path(certName), err)
	}
	return c, k, nil
}

func (d Dir) loadKey(name string) (crypto.Signer, error) {
	data, err := readFile(d.Path(name), true)
	if err != nil {
		return nil, err
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.Path(name), err)
	}
	return k, nil
}

// LoadCA reads ca.crt, and ca.key when it exists (private, as for LoadPair):
// CA.Key is nil on a node that cannot sign.
func (d Dir) LoadCA() (*CA, error) {
	c, err := d.LoadCert(CACertFile)
	if err != nil {
		return nil, err
	}
	if !c.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", d.Path(CACertFile))
	}
	ca := &CA{Cert: c}
	k, err := d.loadKey(CAKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return ca, nil
	}
	if err != nil {
		return nil, err
	}
	if err := keyMatches(c, k); err != nil {
		return nil, fmt.Errorf("%s is not the key of %s: %w", d.Path(CAKeyFile), d.Path(CACertFile), err)
	}
	ca.Key = k
	return ca, nil
}

// readFile reads path, at most maxFileSize bytes. A private file (a key, a
// credential) must be owned by the effective user and not readable or
// writable by group or others: agentd runs as root, and a key others can read
// has leaked. The checks are made on the opened file, not on its name.
func readFile(path string, private bool) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // names path; fs.ErrNotExist survives
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if private {
		if err := checkPrivate(path, fi); err != nil {
			return nil, err
		}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes; it is not a certificate or key file", path, maxFileSize)
	}
	return data, nil
}

// checkPrivate says why a private file with info fi is not private enough.
func checkPrivate(path string, fi fs.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: it holds a private key that group or others can access; run chmod 600 %s (and consider the key leaked if others could read it)", path, perm, path)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot tell its owner", path)
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return fmt.Errorf("%s is owned by uid %d, not by uid %d that reads it: it holds a private key; run chown %d %s and chmod 600 %s", path, st.Uid, uid, uid, path, path)
	}
	return nil
}
