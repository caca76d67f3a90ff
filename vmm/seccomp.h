/* Per-thread seccomp allowlists. Each thread kind (the VMM event loop, a
 * vCPU; later the API thread) has its own table of allowed syscalls, with
 * ioctl and madvise matched on their argument and a comment per entry
 * saying who needs it. The tables are compiled to BPF once, on the main
 * thread, before the threads that use them start; each thread then loads
 * its own filter (no TSYNC) after its resources are open and before it
 * runs guest code or serves a request. */
#ifndef MOTE_VMM_SECCOMP_H
#define MOTE_VMM_SECCOMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Adding a thread kind: a value here (before SECCOMP_NR_THREADS) and a
 * table in seccomp.c. A thread inherits the filter of the thread that
 * created it, so create a new kind's thread before the creator installs
 * its own filter. */
enum seccomp_thread {
	SECCOMP_VMM,  /* event loop, and teardown after the loop stops */
	SECCOMP_VCPU, /* KVM_RUN and exit dispatch */
	SECCOMP_API,  /* HTTP over the API socket; hands requests to the VMM thread */
	SECCOMP_NR_THREADS,
};

enum seccomp_mode {
	SECCOMP_KILL, /* default: a forbidden syscall kills the process */
	SECCOMP_TRAP, /* --seccomp-debug: SIGSYS handler names it, then exits */
	SECCOMP_OFF,  /* --no-seccomp */
};

/* Exit status when a filter stops the process: 128 + SIGSYS. The TRAP
 * handler exits with it; a KILL_PROCESS death shows as the same number in
 * a shell (and in the integration harness), and the kernel's audit log
 * (dmesg, "type=1326 ... syscall=N") names the syscall. */
#define SECCOMP_EXIT_CODE 159

/* One allowed syscall; with arg >= 0, only when argument arg equals value
 * (several entries for one syscall are alternatives). */
struct seccomp_rule {
	int nr;
	const char *name;
	int arg;
	uint64_t value;
	const char *value_name;
	const char *why;
};

/* The BPF of every kind's table for KILL and TRAP, compiled when mote was
 * built (vmm/tools/seccomp_gen.c writes it; the mote binary links it):
 * compiling with libseccomp at start-up cost ~0.4 ms per VM. Binaries
 * without it (unit tests, the generator) compile at run time with the
 * same code. */
struct seccomp_precompiled {
	const struct sock_filter *insns[2][SECCOMP_NR_THREADS]; /* [mode][kind] */
	unsigned short len[2][SECCOMP_NR_THREADS];
	const char *libseccomp_version;
};
struct sock_fprog;
/* Compiles kind's table with libseccomp for KILL or TRAP (no handler is
 * installed). out->filter is malloc'ed. 0 or -errno. */
int seccomp_compile_table(enum seccomp_thread kind, enum seccomp_mode mode,
			  struct sock_fprog *out);
/* The build-time filters, or NULL when this binary has none. */
const struct seccomp_precompiled *seccomp_precompiled(void);

/* Compiles every kind's table for mode (or takes the build-time BPF); in TRAP mode also installs the
 * SIGSYS handler. Call on the main thread before starting the threads
 * that install filters. Reads MOTE_SECCOMP_SELFTEST=vmm|vcpu (a test
 * hook: that thread makes a forbidden syscall, getppid, right after
 * installing its filter). Returns 0 or -errno. */
int seccomp_prepare(enum seccomp_mode mode);
/* Loads the prepared filter of kind on the calling thread; a no-op when
 * seccomp is off. No allocation and two syscalls (PR_SET_NO_NEW_PRIVS,
 * seccomp), so nothing the filter forbids runs after it. 0 or -errno. */
int seccomp_install(enum seccomp_thread kind);
/* False in AddressSanitizer builds, whose runtime makes syscalls no list
 * allows: there seccomp_prepare treats every mode as SECCOMP_OFF. */
bool seccomp_available(void);
/* Every kind's list with counts and comments (--print-seccomp). */
int seccomp_print(FILE *f);

/* Table access, for seccomp_print and the unit test. */
const char *seccomp_thread_name(enum seccomp_thread kind);
size_t seccomp_rules(enum seccomp_thread kind, const struct seccomp_rule **rules);
/* Distinct syscalls (ioctl counts once however many requests). */
unsigned seccomp_count_syscalls(enum seccomp_thread kind);
/* What Firecracker's filter for the same thread allows, for comparison. */
unsigned seccomp_firecracker_count(enum seccomp_thread kind);

#endif
