package benchutil

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

// Main runs a benchmark's run function with a context that SIGINT, SIGTERM and
// SIGHUP cancel (so that it cleans up), then exits: 0, 1 after an error (printed
// with name), 130 when a signal ended it. SIGPIPE is ignored: a closed stdout
// (`| head`) must not kill the program before its clean-up.
func Main(name string, run func(context.Context) error) {
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	code := 0
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		code = 1
		if ctx.Err() != nil {
			code = 130
		}
	}
	stop()
	os.Exit(code)
}

// WorkDir returns the absolute path of dir (the -dir flag), created if needed,
// or with dir "" a new directory under /var/tmp named after pattern (as
// os.MkdirTemp).
func WorkDir(dir, pattern string) (string, error) {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("/var/tmp", pattern); err != nil {
			return "", err
		}
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}
