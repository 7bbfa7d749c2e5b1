package source

import (
	"path/filepath"
	"strings"
)

// manifestExts are the file name extensions of manifests (compared case-insensitively).
var manifestExts = []string{".yaml", ".yml", ".json"}

// considered says whether a file name in the manifest directory names a manifest.
// Editor swap and backup files and package-manager leftovers are never manifests,
// even when their names end in .yaml, so an editor or an upgrade in progress cannot
// start a pod from a half-written or stale copy. Writers should write to a name
// this rejects (such as x.yaml.tmp) and rename it into place.
func considered(name string) bool {
	return !editorFile(name) && hasManifestExt(name)
}

func hasManifestExt(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	for _, e := range manifestExts {
		if ext == e {
			return true
		}
	}
	return false
}

// editorFile says whether name is a dotfile or a temporary or backup file of an
// editor or a package manager: vim (.x.swp, .swo, .swx, its "4913" write test,
// x~), emacs (#x#, .#x), and *.bak, *.tmp, *.orig, dpkg's x.dpkg-new/-old/-dist and
// rpm's x.rpmnew/.rpmsave.
func editorFile(name string) bool {
	switch {
	case name == "" || name == "4913":
		return true
	case strings.HasPrefix(name, "."): // dotfiles, .#x (emacs locks), .x.swp
		return true
	case strings.HasSuffix(name, "~"):
		return true
	case len(name) >= 2 && strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"):
		return true
	case strings.Contains(name, ".dpkg-"), strings.Contains(name, ".rpm"):
		return true
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".swp", ".swo", ".swx", ".bak", ".tmp", ".orig":
		return true
	}
	return false
}
