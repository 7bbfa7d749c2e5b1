package reconcile

// CRIRestore is what restore does with a container a CRI client created: its
// record is kept whatever happens (the client sees the same ID, in the state
// its monitor left it), only what runs is decided here.
type CRIRestore string

const (
	// CRIAdopt: take the monitor over; its journal is the container's state
	// (RUNNING, or EXITED with its exit code if it ended meanwhile).
	CRIAdopt CRIRestore = "Adopt"
	// CRIStop: live restore is off: stop the monitor, keep its journal (EXITED).
	CRIStop CRIRestore = "Stop"
	// CRICreated: never started: nothing to do, CREATED.
	CRICreated CRIRestore = "Created"
	// CRILost: started, but its monitor is dead or gone: kill what it left
	// (runtime Cleanup) and report it EXITED (MonitorLost). Never restarted:
	// the CRI client restarts containers.
	CRILost CRIRestore = "Lost"
	// CRILeaveUnmanaged: a monitor of an incompatible version: left alone.
	CRILeaveUnmanaged CRIRestore = "LeaveUnmanaged"
)

// RestoreCRIContainer decides what restore does with a CRI container:
// startedOnce is its record's (StartContainer was called), found says whether
// a monitor was found and m what it was.
func RestoreCRIContainer(startedOnce, found bool, m MonitorFound, liveRestore bool) CRIRestore {
	switch {
	case !found && !startedOnce:
		return CRICreated
	case !found, m == MonitorDead:
		return CRILost
	case m == MonitorUnmanaged:
		return CRILeaveUnmanaged
	case !liveRestore:
		return CRIStop
	}
	return CRIAdopt
}
