package pki

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// pinPrefix starts every pin: kubeadm's format names the hash so that another
// could follow.
const pinPrefix = "sha256:"

// SPKIHash is c's pin, kubeadm's format (k8s.io/kubernetes
// cmd/kubeadm/app/util/pubkeypin): "sha256:" and the lowercase hex SHA-256 of
// the certificate's SubjectPublicKeyInfo. It pins the key, not the certificate,
// so a CA re-issued with the same key keeps its pin. The same string comes from
//
//	openssl x509 -pubkey -noout -in ca.crt | openssl pkey -pubin -outform der | sha256sum
func SPKIHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return pinPrefix + hex.EncodeToString(sum[:])
}

// ParsePin parses a pin as SPKIHash writes it, its hex in either case, into the
// 32 bytes of the hash.
func ParsePin(pin string) ([]byte, error) {
	pin = strings.TrimSpace(pin)
	const want = `a CA pin looks like "sha256:" and 64 hex digits, as ` + "`agentctl cluster init`" + ` prints it`
	if pin == "" {
		return nil, fmt.Errorf("the CA pin is empty; %s", want)
	}
	if len(pin) < len(pinPrefix) || !strings.EqualFold(pin[:len(pinPrefix)], pinPrefix) {
		if i := strings.IndexByte(pin, ':'); i >= 0 {
			return nil, fmt.Errorf("the CA pin's hash %q is not supported; %s", pin[:i], want)
		}
		return nil, fmt.Errorf("the CA pin has no %q prefix; %s", pinPrefix, want)
	}
	digits := pin[len(pinPrefix):]
	if len(digits) != 2*sha256.Size {
		return nil, fmt.Errorf("the CA pin has %d hex digits after %q, not %d; %s", len(digits), pinPrefix, 2*sha256.Size, want)
	}
	sum, err := hex.DecodeString(digits)
	if err != nil {
		return nil, fmt.Errorf("the CA pin is not hex after %q; %s", pinPrefix, want)
	}
	return sum, nil
}

// MatchesPin says whether c's public key is the one pin (from ParsePin) names.
// The comparison takes the same time wherever the hashes differ.
func MatchesPin(c *x509.Certificate, pin []byte) bool {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return subtle.ConstantTimeCompare(sum[:], pin) == 1
}
