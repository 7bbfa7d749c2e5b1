package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr"
)

// The puller is rebuilt from the pull settings' files at start and at SIGHUP;
// a bad file is an error that names it and keeps the puller in use.
func TestSetPullOptionsKeepsThePullerOnABadFile(t *testing.T) {
	dir := t.TempDir()
	a := newAgent(Options{Root: dir, Log: logr.Discard()}, nil, &fakeImages{present: map[string]bool{}})
	good := PullOptions{RegistriesConfig: filepath.Join(dir, "missing-registries.yaml"), Parallel: 3}
	if err := a.SetPullOptions(good); err != nil {
		t.Fatalf("a missing registries file: %v", err)
	}
	before := a.imageMgr.currentPuller()
	if before == nil {
		t.Fatal("no puller")
	}

	providers := filepath.Join(dir, "providers.yaml")
	if err := os.WriteFile(providers, []byte("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n- name: ../evil\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]PullOptions{
		"bad provider config":          {CredentialProviderConfig: providers, CredentialProviderBinDir: dir},
		"missing provider config":      {CredentialProviderConfig: filepath.Join(dir, "nope.yaml"), CredentialProviderBinDir: dir},
		"registries file not readable": {RegistriesConfig: filepath.Join(dir, "missing-dir", "\x00")},
	} {
		err := a.SetPullOptions(o)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if !strings.Contains(err.Error(), "image-credential-provider-config") && !strings.Contains(err.Error(), "registries-config") {
			t.Errorf("%s: the error does not name the setting: %v", name, err)
		}
		if a.imageMgr.currentPuller() != before {
			t.Errorf("%s: the puller was replaced", name)
		}
	}
	if err := a.SetPullOptions(good); err != nil || a.imageMgr.currentPuller() == before {
		t.Errorf("a good reload: %v, puller replaced: %v", err, a.imageMgr.currentPuller() != before)
	}
}
