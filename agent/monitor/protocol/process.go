package protocol

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// A process is identified by its pid and its start time, field 22 of
// /proc/<pid>/stat (clock ticks since boot), which together survive pid reuse:
// Journal.MonitorStart, Run.PidStartTime and HelloReply.StartTime hold that value,
// and agentd adopts a monitor only when its pid and start time match.

// ProcessStartTime returns pid's start time, field 22 of /proc/<pid>/stat.
func ProcessStartTime(pid int) (uint64, error) {
	fields, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(fields[19], 10, 64)
}

// ProcessAlive reports whether pid is the process that started at start and has
// not exited: a zombie (exited, not yet reaped by its parent — for a detached
// monitor that is pid 1) counts as gone.
func ProcessAlive(pid int, start uint64) bool {
	fields, err := statFields(pid)
	if err != nil {
		return false
	}
	if st, err := strconv.ParseUint(fields[19], 10, 64); err != nil || st != start {
		return false
	}
	if fields[0] != "Z" && fields[0] != "X" {
		return true
	}
	// A zombie leader whose other threads still run is a process in the middle of
	// exiting (or of an exec from another thread): not gone yet.
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	return err == nil && len(tasks) > 1
}

// statFields returns the fields of /proc/<pid>/stat from field 3 (state) on, at
// least through field 22 (the start time, fields[19]).
func statFields(pid int) ([]string, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return nil, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return fields, nil
}
