// Command sysprobe runs inside test containers (built static by the e2e tests and
// bind-mounted in) to try the syscalls a seccomp profile decides on:
//
//	sysprobe syscalls   one line per syscall: "<name> ok" or "<name> <errno name>"
//	sysprobe keyring    the description of the process's session keyring
//	sysprobe compat     the same through the i386 ABI (amd64 only): getpid32, keyctl32
package main

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sysprobe syscalls|keyring|compat")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "syscalls":
		report("keyctl", keyctl())
		report("add_key", addKey())
		report("request_key", requestKey())
		report("io_uring_setup", ioUringSetup())
	case "compat":
		compat()
	case "keyring":
		desc, err := unix.KeyctlString(unix.KEYCTL_DESCRIBE, unix.KEY_SPEC_SESSION_KEYRING)
		if err != nil {
			fmt.Println("error", errnoName(err))
			os.Exit(1)
		}
		fmt.Println(desc)
	default:
		fmt.Fprintln(os.Stderr, "sysprobe: unknown command", os.Args[1])
		os.Exit(2)
	}
}

func report(name string, err error) {
	if err == nil {
		fmt.Println(name, "ok")
		return
	}
	fmt.Println(name, errnoName(err))
}

func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		if n := unix.ErrnoName(errno); n != "" {
			return n
		}
	}
	return err.Error()
}

func keyctl() error {
	_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 0, 0, 0)
	return err
}

func addKey() error {
	// The process keyring goes with the process: nothing is left behind.
	_, err := unix.AddKey("user", "sysprobe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
	return err
}

// requestKey looks for a key that does not exist: ENOKEY (or ENOENT, with no
// request-key helper) when the syscall is allowed.
func requestKey() error {
	_, err := unix.RequestKey("user", "sysprobe-absent", "", 0)
	return err
}

func ioUringSetup() error {
	var params [120]byte // struct io_uring_params, zeroed
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		return errno
	}
	unix.Close(int(fd))
	return nil
}
