/*
 * user.h - ring-3 (CPL3) support for the mote test unikernel, reusable by
 * any guest code that wants to run at user privilege.
 *
 * Why: on the development machines guest CPL0 code is emulated (~260 ns
 * per instruction) while CPL3 code runs natively, so heavy guest work
 * (duty-cycle loops, touching memory) runs at CPL3.
 *
 * How it crosses back to CPL0: only through an exception. `syscall` stays
 * at CPL3 under the nested software hypervisor here and `int N` arrives
 * as #UD, so a user call is `ud2` with the call number in %rax and the
 * arguments in %rdi, %rsi; the #UD handler (CPL0, on the TSS's rsp0
 * stack) dispatches it, puts the result in %rax, steps over the ud2 and
 * returns with iretq. On VT-x/AMD-V hosts `syscall` would work too; the
 * GDT is laid out for it (user code32, user data, user code64 in STAR's
 * order) but mote's guest does not need it.
 *
 * Only the boot CPU runs user code (one TSS). User code runs with
 * interrupts off unless user_set_interrupts(1); a user call may enable
 * them while it waits (sleep).
 */
#ifndef MOTE_GUEST_USER_H
#define MOTE_GUEST_USER_H

#include <stdint.h>

#define USER_SEL_KCODE   0x08
#define USER_SEL_KDATA   0x10
#define USER_SEL_UCODE32 0x23   /* 0x20 | RPL 3: unused, keeps STAR's order */
#define USER_SEL_UDATA   0x2b   /* 0x28 | RPL 3 */
#define USER_SEL_UCODE   0x33   /* 0x30 | RPL 3 */
#define USER_SEL_TSS     0x38

/* Call numbers below USER_CALL_FIRST_FREE belong to user.c. */
#define USER_CALL_EXIT       0  /* a0: the value user_run returns */
#define USER_CALL_FIRST_FREE 16

/* Frame pushed by start.S's exception stubs and exc_common (lowest first). */
struct exc_frame {
	uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
	uint64_t vector;
	uint64_t error;
	uint64_t rip, cs, rflags, rsp, ss;
};

/* CPL0 side of user calls >= USER_CALL_FIRST_FREE; returns the result. */
typedef uint64_t (*user_call_fn)(uint64_t nr, uint64_t a0, uint64_t a1);

/* Loads a GDT with user segments and a TSS (ltr), and makes the guest
 * image user-accessible. Idempotent. Returns 0. */
int user_init(void);
/* Makes identity-mapped [paddr, paddr + len) accessible at CPL3 (2 MiB
 * granularity, below 4 GiB). 0 or -EINVAL. */
int user_map(uint64_t paddr, uint64_t len);
void user_set_call_handler(user_call_fn fn);
/* Runs fn(arg) at CPL3 on the given stack (16-byte aligned top) and
 * returns what fn returned (or passed to USER_CALL_EXIT). */
uint64_t user_run(uint64_t (*fn)(uint64_t), uint64_t arg, void *stack_top);

/*
 * Supervising user code (the function runtime, guest/fn/):
 *  - a fault handler sees every exception raised at CPL3 that is not a
 *    user call (#PF, #GP, #DE, a stray #UD, ...); user_run then returns
 *    what it returned. Without one, such an exception stops the guest as
 *    any exception does.
 *  - with interrupts on, user code can be interrupted (a deadline timer);
 *    after the interrupt was handled (irq_dispatch), the irq hook may
 *    stop the user code: a nonzero value is what user_run returns.
 * Both return to user_run's caller with interrupts off.
 */
typedef uint64_t (*user_fault_fn)(const struct exc_frame *frame);
typedef uint64_t (*user_irq_fn)(void);
void user_set_fault_handler(user_fault_fn fn);
void user_set_irq_hook(user_irq_fn fn);
/* Whether user_run runs user code with interrupts enabled (default off). */
void user_set_interrupts(int on);
/* From a user call handler or a hook (CPL0, on the user-entry stack):
 * abandons the user code; user_run returns value. */
__attribute__((noreturn)) void user_resume_kernel(uint64_t value);

/* From idt.c for an exception or interrupt: 1 if it handled it (a user
 * call, an interrupt that arrived at CPL3). */
int user_handle_exception(struct exc_frame *frame);

/* User side: a call into CPL0. */
static inline uint64_t user_call(uint64_t nr, uint64_t a0, uint64_t a1)
{
	uint64_t ret = nr;

	__asm__ volatile("ud2" : "+a"(ret) : "D"(a0), "S"(a1) : "memory");
	return ret;
}

#endif /* MOTE_GUEST_USER_H */
