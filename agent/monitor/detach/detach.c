// agent-monitor `start`, done before the Go runtime exists; see detach.go.

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

// The descriptors `start` is handed and the monitor keeps: stdio, the sync pipe (3)
// and the state dir's lock (4); protocol.SyncFd and protocol.LockFd.
#define AGENT_MONITOR_FIRST_UNKEPT_FD 5

static void agent_monitor_fail(const char *what)
{
	// stderr is still the caller's: agentd shows it in its error.
	dprintf(2, "agent-monitor start: %s: %s\n", what, strerror(errno));
	_exit(1);
}

// glibc calls constructors with main's arguments. Only `agent-monitor start ...`
// is acted on; any other command line returns at once.
__attribute__((constructor)) static void agent_monitor_detach(int argc, char **argv, char **envp)
{
	(void)envp;
	if (argc < 2 || strcmp(argv[1], "start") != 0)
		return;
	// Nothing the caller leaked (a descriptor without close-on-exec) may stay open
	// in a process that lives as long as its container.
	if (syscall(SYS_close_range, AGENT_MONITOR_FIRST_UNKEPT_FD, ~0U, 0) < 0)
		agent_monitor_fail("close inherited descriptors");
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0)
		agent_monitor_fail("open /dev/null");
	pid_t pid = fork();
	if (pid < 0)
		agent_monitor_fail("fork");
	if (pid > 0)
		_exit(0); // the caller waits for this exit; the monitor goes on alone
	// The monitor: reparented to init (or a subreaper) once its parent exited, in
	// a session of its own, its stdio on /dev/null (the caller's stderr pipe must
	// see EOF), out of the caller's working directory.
	if (setsid() < 0)
		agent_monitor_fail("setsid");
	if (chdir("/") < 0)
		agent_monitor_fail("chdir /");
	for (int fd = 0; fd < 3; fd++)
		if (dup2(devnull, fd) < 0)
			_exit(1); // stderr may be gone already: the sync pipe's EOF tells agentd
	close(devnull);
	// The Go runtime reads the arguments after this: it runs as `run`, the
	// detached monitor's command ("start" has room for it).
	memcpy(argv[1], "run", sizeof("run"));
}
