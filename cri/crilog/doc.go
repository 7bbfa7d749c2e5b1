// Package crilog writes and reads container log files in the Kubernetes CRI log
// format, the format kubelet reads for `kubectl logs` and CRI-O and containerd write:
//
//	<RFC 3339 timestamp> <stdout|stderr> <F|P> <content>\n
//
// One record is one line of a container's output, or one chunk of a line that is
// longer than MaxLineSize: every chunk but the last is tagged P (partial, the line
// continues in the next record of the same stream) and the last one F. Content is
// kept byte for byte: a "\r" before the "\n" stays in the content, as CRI-O writes it
// and kubelet reads it (containerd strips it).
//
// The Writer is the half that runs in agent-monitor, once per container, so it is
// built to stay small: it starts no goroutines, each Copy owns one fixed buffer of
// max(32 KiB, MaxLineSize+1) bytes, and steady-state writing allocates nothing. It
// never makes the container wait for anything but the disk: when a write fails
// (disk full, quota, EIO, the file deleted) the records are dropped and counted, and
// the next records try again. Options change it: MaxLineSize (chunking), MaxSize and
// MaxFiles (rotation by rename: path → path.1 → … → path.N).
//
// The reader half (ParseLine, ReadAll, Follow) serves `agentctl logs`: it joins P
// chunks back into lines, reads only the end of a file for Tail, and follows a file
// across rotations.
//
// Both halves name a log as a trusted root (agentd's log-dir) and a path beneath it,
// because a pod with a hostPath volume over the log directory can plant symlinks,
// hard links, FIFOs or device nodes there. Everything beneath the root is opened
// relative to a directory fd without following symlinks, a log file only if it is a
// regular file with one link, and a rotation renames relative to the directory fd the
// Writer keeps; a plant makes the open fail (ErrUnsafeFile, ELOOP, ENOTDIR), never
// makes it reach another file.
package crilog
