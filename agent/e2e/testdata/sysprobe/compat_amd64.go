package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

func int80(trap, a1, a2, a3 uintptr) (r uintptr)

// The i386 syscall numbers (arch/x86/entry/syscalls/syscall_32.tbl).
const (
	i386Getpid = 20
	i386Keyctl = 288
)

// compat makes syscalls through the i386 ABI, which a seccomp filter must cover
// as well as the native one: a getpid every 32-bit program needs, and a keyctl
// RuntimeDefault refuses.
func compat() {
	report("getpid32", i386Result(int80(i386Getpid, 0, 0, 0), func(r int) error {
		if r != unix.Getpid() {
			return fmt.Errorf("pid %d, want %d", r, unix.Getpid())
		}
		return nil
	}))
	keySpecSession := -3 // KEY_SPEC_SESSION_KEYRING, as the 32-bit value it is
	report("keyctl32", i386Result(int80(i386Keyctl, unix.KEYCTL_GET_KEYRING_ID, uintptr(uint32(keySpecSession)), 0), nil))
}

// i386Result turns an i386 syscall's return value into an error: -4095..-1 are
// errnos; check, when not nil, judges a success.
func i386Result(r uintptr, check func(int) error) error {
	v := int32(uint32(r))
	if v < 0 && v > -4096 {
		return unix.Errno(-v)
	}
	if check != nil {
		return check(int(v))
	}
	return nil
}
