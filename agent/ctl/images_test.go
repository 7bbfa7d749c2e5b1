package ctl

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/agentd-project/agentd/agent/api"
)

func TestImageRows(t *testing.T) {
	d := "sha256:" + strings.Repeat("d", 64)
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{nil, "[{<none> <none> <none>}]"},
		{[]string{"localhost/busybox:latest"}, "[{localhost/busybox latest <none>}]"},
		{[]string{"registry:5000/team/app:v3", "registry:5000/team/app@" + d},
			"[{registry:5000/team/app v3 " + d + "}]"},
		{[]string{"docker.io/library/busybox:1.36", "docker.io/library/busybox:latest", "docker.io/library/busybox@" + d},
			"[{docker.io/library/busybox 1.36 " + d + "} {docker.io/library/busybox latest " + d + "}]"},
		{[]string{"registry:5000/app@" + d}, "[{registry:5000/app <none> " + d + "}]"},
		{[]string{"localhost/other:1", "registry:5000/app@" + d},
			"[{localhost/other 1 <none>} {registry:5000/app <none> " + d + "}]"},
	} {
		if got := fmt.Sprint(imageRows(tc.names)); got != tc.want {
			t.Errorf("imageRows(%q) = %s, want %s", tc.names, got, tc.want)
		}
	}
}

func TestGetImagesShowsDigests(t *testing.T) {
	b, sock := fakeAgent(t)
	d := "sha256:" + strings.Repeat("d", 64)
	b.ImageList = []api.Image{{ID: "sha256:" + strings.Repeat("a", 64), Names: []string{"registry:5000/app:1", "registry:5000/app@" + d}, Size: 2 << 20}}
	code, out, errOut := run(sock, "get", "images")
	want := "REPOSITORY          TAG   DIGEST                                                                    IMAGE ID       SIZE\n" +
		"registry:5000/app   1     " + d + "   aaaaaaaaaaaa   2.1MB\n"
	if code != 0 || out != want {
		t.Errorf("get images: %d %q\n%s\nwant:\n%s", code, errOut, out, want)
	}
}

func TestImagePull(t *testing.T) {
	b, sock := fakeAgent(t)
	layer := "sha256:" + strings.Repeat("1", 64)
	b.PullProgressList = []api.PullProgress{
		{Status: "Resolving"},
		{Layer: layer, Status: "Downloading", Done: 0, Total: 3 << 20},
		{Layer: layer, Status: "Pull complete", Done: 3 << 20, Total: 3 << 20},
	}
	b.PullResultValue = &api.PullResult{Image: api.Image{ID: "sha256:" + strings.Repeat("a", 64), Names: []string{"registry:5000/app:1", "registry:5000/app@sha256:dd"}, Size: 3 << 20},
		Digest: "sha256:dd", Duration: 1234567890}
	code, out, errOut := run(sock, "image", "pull", "registry:5000/app:1")
	// Not a terminal: a line per status change.
	want := "manifest: Resolving\n111111111111: Downloading 0B/3.15MB\n111111111111: Pull complete\nDigest: sha256:dd\nPulled: registry:5000/app:1 (aaaaaaaaaaaa, 3.15MB in 1.234s)\n"
	if code != 0 || out != want {
		t.Errorf("image pull: %d %q\n%s\nwant:\n%s", code, errOut, out, want)
	}

	b.Lock()
	b.Err["PullImage"] = errors.New("pull registry:5000/app:1: unauthorized: authentication required")
	b.Unlock()
	code, _, errOut = run(sock, "image", "pull", "registry:5000/app:1")
	if code != 1 || errOut != "error: pull registry:5000/app:1: unauthorized: authentication required\n" {
		t.Errorf("a failing pull: exit %d, stderr %q", code, errOut)
	}
}

// On a terminal each layer keeps one line, redrawn in place.
func TestPullPrinterRedrawsInPlace(t *testing.T) {
	var b strings.Builder
	p := newPullPrinter(&b, 80)
	p.update(api.PullProgress{Layer: "sha256:aaaaaaaaaaaa1", Status: "Downloading", Done: 0, Total: 100})
	p.update(api.PullProgress{Layer: "sha256:bbbbbbbbbbbb1", Status: "Waiting"})
	p.update(api.PullProgress{Layer: "sha256:aaaaaaaaaaaa1", Status: "Downloading", Done: 50, Total: 100})
	got := b.String()
	want := "\x1b[2Kaaaaaaaaaaaa: Downloading [>                              ] 0B/100B\n" +
		"\x1b[1A\x1b[2Kaaaaaaaaaaaa: Downloading [>                              ] 0B/100B\n\x1b[2Kbbbbbbbbbbbb: Waiting\n" +
		"\x1b[2A\x1b[2Kaaaaaaaaaaaa: Downloading [===============>               ] 50B/100B\n\x1b[2Kbbbbbbbbbbbb: Waiting\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// A narrow terminal: lines are cut, never wrapped.
	b.Reset()
	p = newPullPrinter(&b, 20)
	p.update(api.PullProgress{Layer: "sha256:aaaaaaaaaaaa1", Status: "Downloading", Done: 0, Total: 100})
	if got, want := b.String(), "\x1b[2Kaaaaaaaaaaaa: Downl\n"; got != want {
		t.Errorf("narrow: got %q, want %q", got, want)
	}
}
