// Package benchutil holds what the benchmark programs under hack/ (benchagent,
// benchmon, benchrestore) share: reading processes, memory and CPU time from
// /proc, running and stopping an agentd and finding its monitors (as processes
// of the run's copy of the binaries), finding and removing what a run left
// behind (processes, mounts, cgroups, a bridge, nat rules), and small statistics
// and table helpers for their reports. Like the programs, it knows agentd only by
// its binaries and its API, never by its packages or the files it keeps.
//
// Everything here is Linux-only and most of it needs root, like the benchmarks.
package benchutil
