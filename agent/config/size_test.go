package config

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		str  string
	}{
		{"0", 0, "0"},
		{"32Gi", 32 << 30, "32Gi"},
		{"1536Mi", 1536 << 20, "1536Mi"},
		{"1.5Gi", 1536 << 20, "1536Mi"},
		{"500M", 500e6, "500M"},
		{"1073741824", 1 << 30, "1Gi"},
		{"1e9", 1e9, "1G"},
		{"10GiB", 10 << 30, "10Gi"},
		{"10GB", 10e9, "10G"},
		{" 5Gi ", 5 << 30, "5Gi"},
		{"1000", 1000, "1k"},
	} {
		got, err := ParseSize(tc.in)
		if err != nil || got.Bytes != tc.want || got.String() != tc.str {
			t.Errorf("ParseSize(%q) = %d %q, %v; want %d %q", tc.in, got.Bytes, got.String(), err, tc.want, tc.str)
		}
	}
	for _, in := range []string{"", "-1", "-1Gi", "+1Gi", ".5Gi", "100m", "1.5", "10 gigs", "10gb", "Gi", "B", "1Gi2"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got.Bytes)
		}
	}
	_, err := ParseSize("100m")
	wantErr(t, err, "not a whole number of bytes", "Mi")
}

func TestImageSizeSettings(t *testing.T) {
	dir := setup(t)
	path := filepath.Join(dir, "agent.json")
	writeFile(t, path, `{"image-max-size": "10GiB"}`)
	c := mustLoad(t, "--config-file", path, "--image-store-max-size", "100Gi")
	if c.ImageMaxSize.Bytes != 10<<30 || c.ImageStoreMaxSize.Bytes != 100<<30 {
		t.Errorf("image-max-size %d, image-store-max-size %d; want 10Gi and 100Gi", c.ImageMaxSize.Bytes, c.ImageStoreMaxSize.Bytes)
	}

	for _, tc := range []struct{ file, want string }{
		{`{"image-max-size": 1073741824}`, `image-max-size: want a size string such as "32Gi"`},
		{`{"image-max-size": "100m"}`, "image-max-size: \"100m\" is not a whole number of bytes"},
		{`{"image-store-max-size": "-5Gi"}`, `image-store-max-size: want a size string such as "32Gi" or "500M", got "-5Gi"`},
	} {
		writeFile(t, path, tc.file)
		_, err := Load([]string{"--config-file", path})
		wantErr(t, err, tc.want)
	}
	_, err := Load([]string{"--config-file", path, "--image-max-size", "lots"})
	wantErr(t, err, "image-max-size", `want a size string such as "32Gi"`)

	if u := Usage(); !strings.Contains(u, "--image-max-size size") || !strings.Contains(u, "(default 32Gi)") {
		t.Errorf("--help does not show --image-max-size with its default 32Gi:\n%s", u)
	}

	// Reloadable: SIGHUP applies a change.
	writeFile(t, path, `{"image-max-size": "1Gi"}`)
	before := mustLoad(t, "--config-file", path)
	writeFile(t, path, `{"image-max-size": "2Gi", "image-store-max-size": "1Ti"}`)
	after, err := before.Reload()
	if err != nil {
		t.Fatal(err)
	}
	reloadable, needRestart := Diff(before, after)
	if len(reloadable) != 2 || len(needRestart) != 0 || reloadable[0] != (Change{"image-max-size", "1Gi", "2Gi"}) ||
		reloadable[1] != (Change{"image-store-max-size", "0", "1Ti"}) {
		t.Errorf("Diff = %v, %v; want both image sizes reloadable", reloadable, needRestart)
	}
}
