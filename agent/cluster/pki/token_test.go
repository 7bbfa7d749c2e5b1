package pki

import (
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"strings"
	"testing"
	"time"
)

var tokenRE = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

func TestNewToken(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := NewToken()
		if err != nil {
			t.Fatal(err)
		}
		if !tokenRE.MatchString(tok.String()) {
			t.Fatalf("NewToken = %q, not of kubeadm's format", tok)
		}
		if seen[tok.ID] {
			t.Fatalf("NewToken made the id %s twice", tok.ID)
		}
		seen[tok.ID] = true
		parsed, err := ParseToken(tok.String())
		if err != nil || parsed != tok {
			t.Fatalf("ParseToken(String()) = %v, %v; want %v", parsed, err, tok)
		}
	}
}

// TestRandomStringUnbiased draws enough characters that taking bytes modulo
// 36 without rejection (which makes a-d 8/7 as likely as the rest, +14 %)
// fails, while an unbiased draw is within 5 % of the mean by more than seven
// standard deviations.
func TestRandomStringUnbiased(t *testing.T) {
	const perChar = 20000
	s, err := randomString(perChar * len(tokenAlphabet))
	if err != nil {
		t.Fatal(err)
	}
	counts := map[rune]int{}
	for _, c := range s {
		counts[c]++
	}
	if len(counts) != len(tokenAlphabet) {
		t.Fatalf("%d distinct characters, want %d", len(counts), len(tokenAlphabet))
	}
	for c, n := range counts {
		if n < perChar*95/100 || n > perChar*105/100 {
			t.Errorf("%q drawn %d times, want %d ± 5 %%", c, n, perChar)
		}
	}
}

func TestParseToken(t *testing.T) {
	const secret = "9z8y7x6w5v4u3t2s" // not the example's, so that an error quoting it is seen
	for _, tc := range []struct {
		name string
		in   string
		want string // in the error; "" when it parses
	}{
		{"ok", "abcdef." + secret, ""},
		{"whitespace around", "  abcdef." + secret + "\n", ""},
		{"empty", "", "empty"},
		{"no dot", "abcdef" + secret, "no '.'"},
		{"short id", "abcde." + secret, "id (before the '.') has 5 characters"},
		{"long secret", "abcdef." + secret + "0", "secret (after the '.') has 17 characters"},
		{"upper case", "ABCDEF." + secret, "other than a-z and 0-9"},
		{"bad character in the secret", "abcdef.9z8y7x6w5v4u3t2-", "other than a-z and 0-9"},
		{"two dots", "abcdef.9z8y7x6w.v4u3t2s", "other than a-z and 0-9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseToken(tc.in)
			if tc.want == "" {
				if err != nil || tok != (Token{ID: "abcdef", Secret: secret}) {
					t.Fatalf("ParseToken = %v, %v", tok, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "token must look like abcdef.0123456789abcdef") {
				t.Fatalf("ParseToken = %v, want an error containing %q and the format", err, tc.want)
			}
			if _, s, _ := strings.Cut(tc.in, "."); len(s) > 4 && strings.Contains(err.Error(), s) {
				t.Errorf("the error quotes the secret: %v", err)
			}
		})
	}
}

func TestTokenRedacted(t *testing.T) {
	tok := Token{ID: "abcdef", Secret: "0123456789abcdef"}
	if got := tok.String(); got != "abcdef.0123456789abcdef" {
		t.Errorf("String = %q", got)
	}
	if got := tok.Redacted(); got != "abcdef.****************" {
		t.Errorf("Redacted = %q", got)
	}
	if got := tok.MarshalLog(); got != "abcdef.****************" {
		t.Errorf("MarshalLog = %v", got)
	}
}

func TestSecretHash(t *testing.T) {
	const secret = "0123456789abcdef"
	// echo -n 0123456789abcdef | sha256sum
	const want = "9f9f5111f7b27a781f1f1ddde5ebc2dd2b796bfc7365c9c28b548e564176929f"
	if got := HashSecret(secret); got != want {
		t.Errorf("HashSecret = %s, want %s", got, want)
	}
	for _, tc := range []struct {
		stored, secret string
		want           bool
	}{
		{want, secret, true},
		{strings.ToUpper(want), secret, true},
		{want, "0123456789abcdee", false},
		{want, "", false},
		{"", secret, false},
		{want[:63], secret, false},
	} {
		if got := SecretMatches(tc.stored, tc.secret); got != tc.want {
			t.Errorf("SecretMatches(%q, %q) = %v, want %v", tc.stored, tc.secret, got, tc.want)
		}
	}
}

func TestTokenRecordCheck(t *testing.T) {
	tok := Token{ID: "abcdef", Secret: "0123456789abcdef"}
	expires := testNow.Add(time.Hour)
	rec := NewTokenRecord(tok, time.Hour, true, "for worker-1", testNow)
	if rec.ID != "abcdef" || rec.SecretHash != HashSecret(tok.Secret) || !rec.Expires.Equal(expires) ||
		!rec.Once || rec.Description != "for worker-1" || !rec.Created.Equal(testNow) {
		t.Fatalf("NewTokenRecord = %+v", rec)
	}
	forever := NewTokenRecord(tok, 0, false, "", testNow)
	if !forever.Expires.IsZero() {
		t.Fatalf("NewTokenRecord with ttl 0 expires at %v", forever.Expires)
	}
	wrongSecret := Token{ID: "abcdef", Secret: "0123456789abcdee"}
	otherID := Token{ID: "abcdeg", Secret: tok.Secret}
	for _, tc := range []struct {
		name    string
		rec     TokenRecord
		tok     Token
		now     time.Time
		wantIs  error
		wantMsg string
	}{
		{"ok", rec, tok, testNow, nil, ""},
		{"ok a nanosecond before it expires", rec, tok, expires.Add(-1), nil, ""},
		{"never expires", forever, tok, testNow.Add(100 * 365 * 24 * time.Hour), nil, ""},
		{"wrong secret", rec, wrongSecret, testNow, ErrTokenInvalid, "invalid bootstrap token"},
		{"another id", rec, otherID, testNow, ErrTokenInvalid, "invalid bootstrap token"},
		{"expired", rec, tok, expires, ErrTokenExpired, "bootstrap token abcdef expired at 2030-06-01T13:00:00Z"},
		{"expired and wrong secret says invalid", rec, wrongSecret, expires.Add(time.Hour), ErrTokenInvalid, "invalid bootstrap token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rec.Check(tc.tok, tc.now)
			if !errors.Is(err, tc.wantIs) || (err == nil) != (tc.wantIs == nil) {
				t.Fatalf("Check = %v, want %v", err, tc.wantIs)
			}
			if err != nil && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("Check = %q, want it to contain %q", err, tc.wantMsg)
			}
			if err != nil && strings.Contains(err.Error(), tc.tok.Secret) {
				t.Errorf("the error quotes the secret: %v", err)
			}
		})
	}
}

func TestTokenRecordJSON(t *testing.T) {
	tok := Token{ID: "abcdef", Secret: "0123456789abcdef"}
	rec := NewTokenRecord(tok, 0, false, "", testNow)
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"abcdef","secretHash":"` + HashSecret(tok.Secret) + `","expires":"0001-01-01T00:00:00Z","created":"2030-06-01T12:00:00Z"}`
	if string(data) != want {
		t.Errorf("JSON = %s\nwant   %s", data, want)
	}
	if strings.Contains(string(data), tok.Secret) {
		t.Error("the record holds the secret")
	}
	var back TokenRecord
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Check(tok, testNow); err != nil {
		t.Errorf("the record read back refuses its token: %v", err)
	}
}

// TestConstantTimeComparisons pins, by reading the source, that secrets and
// pins are compared with subtle.ConstantTimeCompare: a later "==" would pass
// every behavioural test.
func TestConstantTimeComparisons(t *testing.T) {
	want := map[string]bool{"SecretMatches": false, "MatchesPin": false, "Check": false}
	fset := token.NewFileSet()
	for _, file := range []string{"token.go", "pin.go"} {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if _, tracked := want[fn.Name.Name]; !tracked {
				continue
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if sel, ok := n.(*ast.SelectorExpr); ok && sel.Sel.Name == "ConstantTimeCompare" {
					if x, ok := sel.X.(*ast.Ident); ok && x.Name == "subtle" {
						want[fn.Name.Name] = true
					}
				}
				return true
			})
		}
	}
	for fn, ok := range want {
		if !ok {
			t.Errorf("%s does not call subtle.ConstantTimeCompare", fn)
		}
	}
}
