// objc_msgSend and its variants for the fake Objective-C runtime, System V x86-64.
//
// As in Apple's runtime: the trampoline finds the implementation for (receiver, selector)
// and tail-jumps to it with every argument register and the caller's stack untouched, so
// the implementation -- a plain C++ function with the signature the caller used -- sees
// the call exactly as made. The lookup is C++ (fakert_lookup), so the argument registers
// (rdi rsi rdx rcx r8 r9, xmm0-7, and al, the vector-register count of variadic calls) are
// saved around it.
//
//   objc_msgSend(self, _cmd, ...)           integer / pointer / small-struct returns
//   objc_msgSend_fpret(self, _cmd, ...)     float / double returns (xmm0): same path
//   objc_msgSend_stret(ret, self, _cmd, ...) structs over 16 bytes, returned through `ret`
//
// A nil receiver answers 0 (rax, rdx, xmm0, xmm1), as Objective-C defines.

        .text

// Saves the argument registers, calls fakert_lookup(%rdi, %rsi) (the caller puts receiver
// and selector there), restores them, and jumps to the implementation found.
.macro LOOKUP_AND_JUMP lookup_receiver, lookup_selector, nil_target
        .cfi_startproc
        // On entry %rsp = 8 (mod 16); 200 bytes of frame make the call site 16-aligned.
        subq    $200, %rsp
        .cfi_adjust_cfa_offset 200
        movaps  %xmm0, 0(%rsp)
        movaps  %xmm1, 16(%rsp)
        movaps  %xmm2, 32(%rsp)
        movaps  %xmm3, 48(%rsp)
        movaps  %xmm4, 64(%rsp)
        movaps  %xmm5, 80(%rsp)
        movaps  %xmm6, 96(%rsp)
        movaps  %xmm7, 112(%rsp)
        movq    %rdi, 128(%rsp)
        movq    %rsi, 136(%rsp)
        movq    %rdx, 144(%rsp)
        movq    %rcx, 152(%rsp)
        movq    %r8, 160(%rsp)
        movq    %r9, 168(%rsp)
        movq    %rax, 176(%rsp)
        movq    \lookup_receiver, %rdi
        movq    \lookup_selector, %rsi
        testq   %rdi, %rdi
        jz      1f
        call    fakert_lookup@PLT
        movq    %rax, %r11
        jmp     2f
1:      leaq    \nil_target(%rip), %r11
2:      movaps  0(%rsp), %xmm0
        movaps  16(%rsp), %xmm1
        movaps  32(%rsp), %xmm2
        movaps  48(%rsp), %xmm3
        movaps  64(%rsp), %xmm4
        movaps  80(%rsp), %xmm5
        movaps  96(%rsp), %xmm6
        movaps  112(%rsp), %xmm7
        movq    128(%rsp), %rdi
        movq    136(%rsp), %rsi
        movq    144(%rsp), %rdx
        movq    152(%rsp), %rcx
        movq    160(%rsp), %r8
        movq    168(%rsp), %r9
        movq    176(%rsp), %rax
        addq    $200, %rsp
        .cfi_adjust_cfa_offset -200
        jmp     *%r11
        .cfi_endproc
.endm

        .globl  objc_msgSend
        .type   objc_msgSend, @function
objc_msgSend:
        LOOKUP_AND_JUMP %rdi, %rsi, fakert_nil_return
        .size   objc_msgSend, .-objc_msgSend

        .globl  objc_msgSend_fpret
        .type   objc_msgSend_fpret, @function
objc_msgSend_fpret:
        LOOKUP_AND_JUMP %rdi, %rsi, fakert_nil_return
        .size   objc_msgSend_fpret, .-objc_msgSend_fpret

        .globl  objc_msgSend_stret
        .type   objc_msgSend_stret, @function
objc_msgSend_stret:
        LOOKUP_AND_JUMP %rsi, %rdx, fakert_nil_stret
        .size   objc_msgSend_stret, .-objc_msgSend_stret

// A message to nil returns zero in every return register.
        .type   fakert_nil_return, @function
fakert_nil_return:
        xorl    %eax, %eax
        xorl    %edx, %edx
        xorps   %xmm0, %xmm0
        xorps   %xmm1, %xmm1
        ret
        .size   fakert_nil_return, .-fakert_nil_return

// A struct-returning message to nil zeroes nothing it cannot size; it returns `ret`.
        .type   fakert_nil_stret, @function
fakert_nil_stret:
        movq    %rdi, %rax
        ret
        .size   fakert_nil_stret, .-fakert_nil_stret

        .section .note.GNU-stack,"",@progbits
