package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/agentd-project/agentd/agent/internal/atomicfile"
)

// The credential file's apiVersion and kind.
const (
	CredentialAPIVersion = "agentd.io/v1"
	CredentialKind       = "ClusterCredential"
)

// Credential is the cluster admin credential: one file root can copy to
// another host on purpose, like kubeadm's admin.conf. It is JSON of mode 0600:
//
//	{"apiVersion":"agentd.io/v1","kind":"ClusterCredential","cluster":"<cluster id>",
//	 "endpoints":["https://..."],"certificateAuthority":"<PEM>",
//	 "clientCertificate":"<PEM>","clientKey":"<PEM>"}
type Credential struct {
	Cluster   string
	Endpoints []string
	CA        *x509.Certificate
	Cert      *x509.Certificate
	Key       crypto.Signer
}

// credentialFile is a Credential's JSON.
type credentialFile struct {
	APIVersion           string   `json:"apiVersion"`
	Kind                 string   `json:"kind"`
	Cluster              string   `json:"cluster"`
	Endpoints            []string `json:"endpoints"`
	CertificateAuthority string   `json:"certificateAuthority"`
	ClientCertificate    string   `json:"clientCertificate"`
	ClientKey            string   `json:"clientKey"`
}

// WriteCredential writes c to path, mode 0600, atomically. The directory must
// exist. c is checked as LoadCredential checks it, so that a file written is a
// file that loads.
func WriteCredential(path string, c *Credential) error {
	if err := c.check(time.Now()); err != nil {
		return fmt.Errorf("writing the cluster credential %s: %w", path, err)
	}
	keyPEM, err := EncodeKey(c.Key)
	if err != nil {
		return fmt.Errorf("writing the cluster credential %s: %w", path, err)
	}
	endpoints := c.Endpoints
	if endpoints == nil {
		endpoints = []string{}
	}
	data, err := json.MarshalIndent(credentialFile{
		APIVersion:           CredentialAPIVersion,
		Kind:                 CredentialKind,
		Cluster:              c.Cluster,
		Endpoints:            endpoints,
		CertificateAuthority: string(EncodeCert(c.CA)),
		ClientCertificate:    string(EncodeCert(c.Cert)),
		ClientKey:            string(keyPEM),
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("writing the cluster credential %s: %w", path, err)
	}
	if err := atomicfile.WriteFile(path, append(data, '\n'), keyMode); err != nil {
		return fmt.Errorf("writing the cluster credential %s: %w", path, err)
	}
	return nil
}

// LoadCredential reads the credential at path. The file must be private like
// a key file (no access for group or others, owned by the effective user); its
// certificate must chain to its CA as a client certificate now, and its key
// must be the certificate's.
func LoadCredential(path string) (*Credential, error) {
	data, err := readFile(path, true)
	if err != nil {
		return nil, err
	}
	var f credentialFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("the cluster credential %s is not valid JSON of a %s: %w", path, CredentialKind, err)
	}
	if f.APIVersion != CredentialAPIVersion || f.Kind != CredentialKind {
		return nil, fmt.Errorf("%s is a %q of %q, not a %q of %q", path, f.Kind, f.APIVersion, CredentialKind, CredentialAPIVersion)
	}
	c := &Credential{Cluster: f.Cluster, Endpoints: f.Endpoints}
	if c.CA, err = ParseCert([]byte(f.CertificateAuthority)); err != nil {
		return nil, fmt.Errorf("the cluster credential %s: certificateAuthority: %w", path, err)
	}
	if c.Cert, err = ParseCert([]byte(f.ClientCertificate)); err != nil {
		return nil, fmt.Errorf("the cluster credential %s: clientCertificate: %w", path, err)
	}
	if c.Key, err = ParseKey([]byte(f.ClientKey)); err != nil {
		return nil, fmt.Errorf("the cluster credential %s: clientKey: %w", path, err)
	}
	if err := c.check(time.Now()); err != nil {
		return nil, fmt.Errorf("the cluster credential %s: %w", path, err)
	}
	return c, nil
}

// check says why c cannot be used at now.
func (c *Credential) check(now time.Time) error {
	switch {
	case c == nil:
		return errors.New("no credential")
	case c.Cluster == "":
		return errors.New("no cluster id")
	case c.CA == nil || c.Cert == nil || c.Key == nil:
		return errors.New("the CA, the client certificate or the client key is missing")
	case !c.CA.IsCA:
		return fmt.Errorf("certificateAuthority %q is not a CA certificate", c.CA.Subject.CommonName)
	}
	if err := Verify(c.CA, c.Cert, now, x509.ExtKeyUsageClientAuth); err != nil {
		return fmt.Errorf("the client certificate is not valid under the credential's CA: %w", err)
	}
	if err := keyMatches(c.Cert, c.Key); err != nil {
		return fmt.Errorf("the client key: %w", err)
	}
	return nil
}
