package printers

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/agentd-project/agentd/agent/api"
)

func TestPrintTokensNeverShowsASecretAndSaysWhatIsLeft(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	list := []api.TokenInfo{
		{ID: "abcdef", Expires: now.Add(23 * time.Hour), Description: "workers"},
		{ID: "ghijkl", Expires: now.Add(-time.Minute), Once: true},
		{ID: "mnopqr", Once: true, UsedBy: "node-3"},
	}
	var b bytes.Buffer
	if err := PrintTokens(&b, list, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(?m)^TOKEN\s+TTL\s+EXPIRES\s+USAGES\s+DESCRIPTION$`,
		`(?m)^abcdef\.\*{16}\s+23h\s+2026-12-03T07:00:00Z\s+join\s+workers$`,
		`(?m)^ghijkl\.\*{16}\s+<expired>\s+2026-12-02T07:59:00Z\s+join once\s+<none>$`,
		`(?m)^mnopqr\.\*{16}\s+<forever>\s+<never>\s+used by node-3\s+<none>$`,
	} {
		if !regexp.MustCompile(want).Match(b.Bytes()) {
			t.Errorf("token list does not match %s:\n%s", want, b.String())
		}
	}
}

func TestPrintCerts(t *testing.T) {
	now := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	list := []api.CertInfo{
		{Name: "ca", Subject: "agentd cluster CA", NotAfter: now.Add(10 * 365 * 24 * time.Hour)},
		{Name: "node", Subject: "node:node-1", NotAfter: now.Add(30 * time.Second), RenewAt: now.Add(20 * time.Second)},
	}
	var b bytes.Buffer
	if err := PrintCerts(&b, list, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`(?m)^CERTIFICATE\s+SUBJECT\s+EXPIRES\s+RESIDUAL TIME\s+RENEWS$`,
		`(?m)^ca\s+agentd cluster CA\s+2036-11-29T08:00:00Z\s+\S+\s+no$`,
		`(?m)^node\s+node:node-1\s+2026-12-02T08:00:30Z\s+30s\s+2026-12-02T08:00:20Z$`,
	} {
		if !regexp.MustCompile(want).Match(b.Bytes()) {
			t.Errorf("certs do not match %s:\n%s", want, b.String())
		}
	}
}
