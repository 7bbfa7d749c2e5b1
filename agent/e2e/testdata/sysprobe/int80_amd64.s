#include "textflag.h"

// func int80(trap, a1, a2, a3 uintptr) (r uintptr)
//
// A syscall through the i386 ABI (int $0x80), which a 64-bit process may use
// too: the kernel then takes i386's syscall numbers, and seccomp sees the
// x86 architecture.
TEXT ·int80(SB),NOSPLIT,$0-40
	MOVQ	trap+0(FP), AX
	MOVQ	a1+8(FP), BX
	MOVQ	a2+16(FP), CX
	MOVQ	a3+24(FP), DX
	INT	$0x80
	MOVQ	AX, r+32(FP)
	RET
