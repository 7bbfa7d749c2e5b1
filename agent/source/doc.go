// Package source turns the manifest directory into whole snapshots of the pods the
// node should run, like kubelet's file source (pkg/kubelet/config/file.go): it
// watches the directory with inotify, lists it again every Relist (20 s) whatever
// the watch says, and sends the complete set of pods, an empty set included, each
// time the result changes. One bad file never hides the others: it is left out of
// the pods and listed, with why, in the snapshot's Errors.
//
// Settings: manifest-dir is Config.Dir, node-name Config.NodeName (it goes into
// every pod's spec.nodeName and UID, so changing it replaces every static pod).
//
// Which files count: regular files directly in the directory (no recursion) whose
// names end in .yaml, .yml or .json. Dotfiles, directories, and editor and package
// manager leftovers (x~, .x.swp, 4913, #x#, .#x, *.bak, *.tmp, *.orig, *.dpkg-*,
// *.rpm*) are skipped silently. A symbolic link is followed to a regular file, and
// the checks below apply to the file it points to.
//
// Security, as sshd's StrictModes: a pod runs as root, so its manifest must be as
// well protected as /etc/sudoers. A file writable by group or others or owned by
// someone other than root is refused (ReasonInsecure; the error says which chmod or
// chown fixes it) while the others still run. A directory with the same problems
// runs no pods at all: its snapshot is empty but for one error for the directory.
// A missing directory also gives an empty snapshot (every static pod stops), and
// when it comes back it is watched again. Files over spec.MaxManifestSize are
// refused without being read.
//
// Two files that declare the same pod (namespace/name): the file whose path sorts
// first wins; the other is refused with ReasonDuplicate, naming both.
//
// Writing manifests: Run sends what is on disk. A file rewritten in place is
// briefly empty or half written, and a scan that sees it so stops the pod until
// the next event brings it back; a burst of events is debounced (5 ms after the
// last, 50 ms at most after the first), which makes this rare but not impossible.
// As kubelet's documentation advises, write to a temporary name the filters skip
// (x.yaml.tmp, .x.yaml) and rename it into place: the rename is atomic and is seen
// within milliseconds.
//
// Cost: files are parsed again only when they change. A relist stats each file
// and compares (size, mtime, ctime, inode) with the last read; a file changed in
// the last two seconds is read and hashed again, because a coarse file-system clock
// can give two versions the same times, but is parsed only if its hash changed.
package source
