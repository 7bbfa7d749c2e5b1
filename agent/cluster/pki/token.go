package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Bootstrap tokens are kubeadm's: "abcdef.0123456789abcdef", a public id of
// tokenIDLen characters that names the record and a secret of tokenSecretLen.
const (
	tokenIDLen     = 6
	tokenSecretLen = 16
	tokenAlphabet  = "abcdefghijklmnopqrstuvwxyz0123456789"
	tokenExample   = "abcdef.0123456789abcdef"
)

// Token is a bootstrap token. Its secret must not reach logs: log Redacted, or
// the token itself with a logr logger, which calls MarshalLog.
type Token struct{ ID, Secret string }

// NewToken makes a token from crypto/rand, each character uniform over
// [a-z0-9]: 16 secret characters are about 82 bits.
func NewToken() (Token, error) {
	s, err := randomString(tokenIDLen + tokenSecretLen)
	if err != nil {
		return Token{}, fmt.Errorf("generating a bootstrap token: %w", err)
	}
	return Token{ID: s[:tokenIDLen], Secret: s[tokenIDLen:]}, nil
}

// randomString is n characters of tokenAlphabet. Bytes of 252 and more are
// drawn again: 252 is the largest multiple of 36 that fits a byte, so every
// character is equally likely.
func randomString(n int) (string, error) {
	const limit = 256 - 256%len(tokenAlphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, tokenAlphabet[int(b)%len(tokenAlphabet)])
			}
		}
	}
	return string(out), nil
}

// ParseToken parses "id.secret". Surrounding whitespace (a token read from a
// file) is ignored. Errors say what is wrong but never quote the input, which
// may be a mistyped secret.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	id, secret, ok := strings.Cut(s, ".")
	switch {
	case s == "":
		return Token{}, fmt.Errorf("the bootstrap token is empty; a token must look like %s", tokenExample)
	case !ok:
		return Token{}, fmt.Errorf("the bootstrap token has no '.'; a token must look like %s", tokenExample)
	case len(id) != tokenIDLen:
		return Token{}, fmt.Errorf("the bootstrap token's id (before the '.') has %d characters, not %d; a token must look like %s", len(id), tokenIDLen, tokenExample)
	case len(secret) != tokenSecretLen:
		return Token{}, fmt.Errorf("the bootstrap token's secret (after the '.') has %d characters, not %d; a token must look like %s", len(secret), tokenSecretLen, tokenExample)
	case !inAlphabet(id) || !inAlphabet(secret):
		return Token{}, fmt.Errorf("the bootstrap token has characters other than a-z and 0-9; a token must look like %s", tokenExample)
	}
	return Token{ID: id, Secret: secret}, nil
}

func inAlphabet(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// String is the whole token, secret included: what the user passes to join.
func (t Token) String() string { return t.ID + "." + t.Secret }

// Redacted is the token with its secret starred out, for logs and listings.
func (t Token) Redacted() string { return t.ID + "." + strings.Repeat("*", tokenSecretLen) }

// MarshalLog is what logr logs for t (logr.Marshaler): Redacted, so that a
// token passed as a log value does not leak through String.
func (t Token) MarshalLog() any { return t.Redacted() }

// HashSecret is the lowercase hex SHA-256 of secret: what the cluster stores,
// so that reading the store does not give a token that joins. The secret is
// random, so it needs no salt or slow hash.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// SecretMatches says whether secret hashes to storedHash (HashSecret's hex, in
// either case), in time that does not depend on where the hashes differ.
func SecretMatches(storedHash, secret string) bool {
	got := HashSecret(secret)
	return subtle.ConstantTimeCompare([]byte(strings.ToLower(storedHash)), []byte(got)) == 1
}

// Errors of TokenRecord.Check. A caller that finds no record for a token's id
// must answer ErrTokenInvalid too, so that a stranger cannot tell unknown ids
// from wrong secrets.
var (
	ErrTokenInvalid = errors.New("invalid bootstrap token")
	ErrTokenExpired = errors.New("bootstrap token expired")
)

// TokenRecord is what the cluster stores under a token's id, as JSON.
type TokenRecord struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secretHash"`
	Expires    time.Time `json:"expires"` // zero: never (ttl 0)
	// Once tokens are deleted on their first successful use (by the caller).
	Once        bool      `json:"once,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
}

// NewTokenRecord is the record of t, created at now, expiring ttl later (never
// when ttl is 0).
func NewTokenRecord(t Token, ttl time.Duration, once bool, description string, now time.Time) TokenRecord {
	r := TokenRecord{
		ID:          t.ID,
		SecretHash:  HashSecret(t.Secret),
		Once:        once,
		Description: description,
		Created:     now,
	}
	if ttl != 0 {
		r.Expires = now.Add(ttl)
	}
	return r
}

// Check says why t may not be used at now, nil when it may: ErrTokenInvalid
// for another id or a wrong secret, an error that is ErrTokenExpired once
// Expires has passed. The secret is checked first, so that only a holder of the
// secret learns that a token expired.
func (r TokenRecord) Check(t Token, now time.Time) error {
	idOK := subtle.ConstantTimeCompare([]byte(r.ID), []byte(t.ID)) == 1
	secretOK := SecretMatches(r.SecretHash, t.Secret)
	if !idOK || !secretOK {
		return ErrTokenInvalid
	}
	if !r.Expires.IsZero() && !now.Before(r.Expires) {
		return &expiredError{id: r.ID, at: r.Expires}
	}
	return nil
}

// expiredError is ErrTokenExpired with the token's id and expiry.
type expiredError struct {
	id string
	at time.Time
}

func (e *expiredError) Error() string {
	return fmt.Sprintf("bootstrap token %s expired at %s; make a new one", e.id, e.at.UTC().Format(time.RFC3339))
}

func (e *expiredError) Unwrap() error { return ErrTokenExpired }
