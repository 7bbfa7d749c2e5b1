package joinapi

import (
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/agentd-project/agentd/agent/cluster/pki"
)

// startRedirector serves a join service certificate of ca at 127.0.0.1 and answers every request with status,
// sending the client to the same path at target. It returns its URL and the count of requests it answered.
func startRedirector(t *testing.T, ca *pki.CA, status int, target string) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		http.Redirect(w, r, target+r.URL.Path, status)
	})
	log := testr.New(t)
	srv, err := Listen("https://127.0.0.1:0", ca.Cert, joinServiceCert(t, ca), h, log)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing the redirecting server: %v", err)
		}
	})
	return "https://" + srv.Addr().String(), &n
}

// TestClientsRefuseRedirects: a join service that answers with a redirect gets an error back, and the location it
// names gets nothing, so that a token or a node's request goes only where the join URL says. The location is a
// working join service of the same CA, which both clients would accept if they followed.
func TestClientsRefuseRedirects(t *testing.T) {
	clients := []struct {
		name string
		call func(t *testing.T, ca *pki.CA, url string) error
	}{{
		name: "joiner",
		call: func(t *testing.T, ca *pki.CA, url string) error {
			_, err := pinnedClient(t, url, pinOf(t, ca.Cert)).Join(t.Context(), JoinRequest{Token: "abcdef.0123456789abcdef", NodeName: "node-2"})
			return err
		},
	}, {
		name: "node",
		call: func(t *testing.T, ca *pki.CA, url string) error {
			leaf, key := issue(t, ca, pki.Request{CommonName: pki.NodeCN("node-2"), Usage: pki.UsageClient}, time.Now())
			_, err := mtlsClient(t, url, ca.Cert, pki.TLSCertificate(leaf, key)).Renew(t.Context(), RenewRequest{NodeCSR: "node csr"})
			return err
		},
	}}
	for _, status := range []int{http.StatusTemporaryRedirect, http.StatusPermanentRedirect, http.StatusFound} {
		for _, cl := range clients {
			t.Run(http.StatusText(status)+"/"+cl.name, func(t *testing.T) {
				ca, elsewhere := clusterServer(t)
				url, answered := startRedirector(t, ca, status, elsewhere.url)

				err := cl.call(t, ca, url)
				if err == nil {
					t.Fatalf("the call through a %d redirect succeeded; want an error", status)
				}
				if !strings.Contains(err.Error(), "redirect") || !strings.Contains(err.Error(), elsewhere.url) {
					t.Errorf("error = %q; want it to say that the service redirected to %s", err, elsewhere.url)
				}
				// The join command retries an unavailable service; a redirect answers the same every time.
				if errors.Is(err, ErrUnavailable) {
					t.Errorf("error = %v; a redirect must not be ErrUnavailable", err)
				}
				if strings.Contains(err.Error(), "0123456789abcdef") {
					t.Errorf("error = %q; it shows the token's secret", err)
				}
				if n := answered.Load(); n != 1 {
					t.Errorf("the redirecting server answered %d requests; want the one call", n)
				}
				elsewhere.assertUntouched(t)
			})
		}
	}
}
