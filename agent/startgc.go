package agent

import "runtime/debug"

// startupGCPercent is the GOGC agentd runs with while it starts.
const startupGCPercent = 400

// startupGC makes the garbage collector lazier while agentd starts: restore and
// the first reading of the manifest directory decode every record, config,
// journal and manifest and keep a fraction of it, and with the small heap of a
// new process the default GOGC (100) collects many times over in those
// milliseconds, on the CPUs the restore is waiting for. It returns what sets
// the operator's GOGC back; a GOGC already as lazy or off is left alone. The
// heap it lets grow is bounded by what restore allocates, a few MB per hundred pods.
func startupGC() (undo func()) {
	old := debug.SetGCPercent(startupGCPercent)
	if old < 0 || old >= startupGCPercent {
		debug.SetGCPercent(old)
		return func() {}
	}
	return func() { debug.SetGCPercent(old) }
}
