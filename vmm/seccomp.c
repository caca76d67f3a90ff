/* Per-thread seccomp allowlists, built with libseccomp.
 *
 * The lists come from running the normal paths (boot, serial, virtio-blk
 * I/O, SIGUSR1 dumps, SIGTERM, teardown) under strace -f and reading the
 * code each thread runs after its filter is in place. Each entry says who
 * needs it. The tables are compiled to BPF on the main thread before any
 * filtered thread starts, so that loading one is two syscalls with no
 * allocation: libseccomp's own seccomp_load() would malloc and free on the
 * filtered thread, and free() may give memory back with syscalls the
 * filter does not allow. Loading uses no SECCOMP_FILTER_FLAG_TSYNC (the
 * equivalent of SCMP_FLTATR_CTL_TSYNC off): each thread gets its own. */
#include "vmm/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <linux/seccomp.h>
#include <seccomp.h>

#include "vmm/log.h"

/* AddressSanitizer's runtime makes syscalls of its own that no list
 * allows (sigaltstack and munmap at thread exit, ptrace for the leak
 * check at process exit): its builds run without filters. */
#if defined(__SANITIZE_ADDRESS__)
#define SECCOMP_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SECCOMP_UNDER_ASAN 1
#endif
#endif
#ifndef SECCOMP_UNDER_ASAN
#define SECCOMP_UNDER_ASAN 0
#endif

_Static_assert(SECCOMP_EXIT_CODE == 128 + SIGSYS, "exit code is 128 + SIGSYS");

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define ALLOW(sys, who) { SCMP_SYS(sys), #sys, -1, 0, NULL, who }
#define ALLOW_ARG(sys, arg, val, who) { SCMP_SYS(sys), #sys, arg, val, #val, who }
#define ALLOW_IOCTL(req, who) { SCMP_SYS(ioctl), "ioctl", 1, req, #req, who }

/* Hot syscalls first: libseccomp puts them early in the BPF program. */
static const struct seccomp_rule vmm_rules[] = {
	ALLOW(epoll_wait, "event loop: loop_run waits for every fd of the VM"),
	ALLOW(read, "event loop callbacks drain their fds: queue-notify ioeventfds, io_uring "
		    "completion eventfds, rate-limit timerfds, exit and console eventfds, "
		    "signalfd, stdin; virtio-net reads frames from its TAP"),
	ALLOW(write, "virtio and serial interrupts (irqfd), exit eventfd, log lines to stderr, "
		     "the --seccomp-debug SIGSYS message"),
	ALLOW(io_uring_enter, "virtio-blk submits requests (blk_backend_submit); at teardown "
			      "blk_backend_drain waits for those in flight"),
	ALLOW(writev, "virtio-net transmits a frame: header copy plus the guest's buffers "
		      "(tap_writev); virtio-vsock writes guest stream data to host sockets"),
	ALLOW(readv, "virtio-vsock reads host stream data straight into the guest's RX "
		     "buffers"),
	ALLOW(accept4, "virtio-vsock accepts host connections on its uds_path"),
	ALLOW_ARG(socket, 0, AF_UNIX, "virtio-vsock: a guest connection to the host opens a "
				      "unix socket (and only a unix socket)"),
	ALLOW(connect, "virtio-vsock connects that socket to <uds_path>_<port>"),
	ALLOW(shutdown, "virtio-vsock passes a guest SHUTDOWN on to the host socket"),
	ALLOW_IOCTL(TUNSETOFFLOAD, "virtio-net tells the TAP which offloads the guest "
				   "negotiated (net_service, after DRIVER_OK)"),
	ALLOW(timerfd_settime, "virtio-blk rate limiter arms its timer; blk_reset disarms it at "
			       "teardown"),
	ALLOW(epoll_ctl, "console pauses and resumes stdin (loop_add/loop_remove); teardown "
			 "removes fds from the loop"),
	ALLOW(futex, "locks shared with the vCPU threads (serial, virtio device, stderr); "
		     "pthread_join at teardown"),
	ALLOW(clock_gettime, "log timestamps and the rate limiter; normally answered by the "
			     "vDSO, a syscall only when the host clocksource has no vDSO support"),
	ALLOW(getpid, "pthread_kill (SIGUSR1 register dump, kicking vCPUs out of KVM_RUN at "
		      "teardown) sends tgkill(getpid(), tid)"),
	ALLOW(tgkill, "pthread_kill, as above"),
	ALLOW(rt_sigprocmask, "glibc's pthread_kill blocks signals around tgkill"),
	ALLOW(rt_sigreturn, "return from a handler that runs on this thread (the vCPU kick "
			    "signal is process-wide; sent from outside, any thread may take it)"),
	ALLOW_IOCTL(TCSETS, "console_restore: tcsetattr puts a terminal on stdin back out of raw "
			    "mode at exit"),
	ALLOW_IOCTL(TCGETS, "console_restore: glibc's tcsetattr reads the settings before and "
			    "after TCSETS"),
	ALLOW(close, "teardown closes every fd of the VM and its devices"),
	ALLOW(munmap, "teardown unmaps guest memory, vCPU run areas and io_uring rings; free() "
		      "of large blocks"),
	ALLOW(exit_group, "process exit; the --seccomp-debug SIGSYS handler's _exit"),
	ALLOW(brk, "malloc grows the heap: after boot this thread still builds API replies "
		   "(jansson) and FlushMetrics lines"),
	ALLOW_ARG(mmap, 2, PROT_READ | PROT_WRITE, "malloc of large blocks (anonymous, never "
						   "executable: only PROT_READ|PROT_WRITE passes)"),
	ALLOW_ARG(madvise, 2, MADV_DONTNEED, "free() gives back trimmed heap pages; the "
					     "working-set sampler zaps sampled guest pages "
					     "(metrics/wss.c)"),
	ALLOW(pread64, "demand metrics: each vCPU's schedstat and KVM statistics fds, "
		       "/proc/self/pagemap for the working set (metrics/); snapshot/create of a "
		       "restored VM: /proc/self/pagemap finds the pages it copied on write"),
	ALLOW(mincore, "demand metrics: resident guest memory (metrics/wss.c)"),
	/* PUT /snapshot/create on a paused VM (snapshot/): reads every vCPU's
	 * and the VM's KVM state, writes both files and renames them. */
	ALLOW_IOCTL(KVM_GET_REGS, "snapshot/create: vCPU registers (also the SIGUSR1 dump)"),
	ALLOW_IOCTL(KVM_GET_CPUID2, "snapshot/create: the vCPU's CPUID table (a restore sets it "
				    "as saved instead of asking KVM and filtering again)"),
	ALLOW_IOCTL(KVM_GET_SREGS, "snapshot/create: vCPU segment and control registers"),
	ALLOW_IOCTL(KVM_GET_FPU, "snapshot/create: vCPU FPU state"),
	ALLOW_IOCTL(KVM_GET_XSAVE, "snapshot/create: vCPU XSAVE area"),
	ALLOW_IOCTL(KVM_GET_XCRS, "snapshot/create: vCPU XCR0"),
	ALLOW_IOCTL(KVM_GET_LAPIC, "snapshot/create: vCPU local APIC"),
	ALLOW_IOCTL(KVM_GET_MP_STATE, "snapshot/create: vCPU run state (halted, waiting for SIPI)"),
	ALLOW_IOCTL(KVM_GET_VCPU_EVENTS, "snapshot/create: pending exceptions and interrupts"),
	ALLOW_IOCTL(KVM_GET_DEBUGREGS, "snapshot/create: vCPU debug registers"),
	ALLOW_IOCTL(KVM_GET_MSRS, "snapshot/create: vCPU MSRs (TSC, kvmclock, syscall MSRs...)"),
	ALLOW_IOCTL(KVM_GET_MSR_INDEX_LIST, "snapshot/create: which MSRs KVM has"),
	ALLOW_IOCTL(KVM_CHECK_EXTENSION, "snapshot/create: XSAVE and XCRS support"),
	ALLOW_IOCTL(KVM_SIGNAL_MSI, "split irqchip: mote's IOAPIC sends virtio and serial "
				    "interrupts"),
	ALLOW_IOCTL(KVM_GET_IRQCHIP, "snapshot/create: both PICs and the IOAPIC"),
	ALLOW_IOCTL(KVM_GET_PIT2, "snapshot/create: the PIT"),
	ALLOW_IOCTL(KVM_GET_CLOCK, "snapshot/create: kvmclock"),
	ALLOW_IOCTL(KVM_GET_DIRTY_LOG, "snapshot/create with track_dirty_pages: the pages the "
				       "vCPUs wrote since the last snapshot (Diff)"),
	ALLOW_ARG(openat, 2, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		  "snapshot/create: creates the state and memory files under temporary names "
		  "(files to write only: nothing can be opened for reading)"),
	ALLOW_ARG(openat, 2, O_RDONLY | O_DIRECTORY | O_CLOEXEC,
		  "snapshot/create: opens the files' directories to fsync the renames"),
	ALLOW(lseek, "snapshot/create: SEEK_DATA/SEEK_HOLE find the guest pages that hold data"),
	ALLOW(pwrite64, "snapshot/create: writes guest pages at their offsets (sparse file)"),
	ALLOW(ftruncate, "snapshot/create: sizes the memory file (holes where nothing was written)"),
	ALLOW(fsync, "snapshot/create: both files and their directories reach the disk before "
		     "and after the renames"),
	ALLOW(rename, "snapshot/create: temporary names to final ones, memory file first"),
	ALLOW(unlink, "snapshot/create: removes its temporary files when it fails; virtio-vsock "
		      "removes its uds_path socket file at teardown"),
	/* pread64 (snapshot/create of a restored VM reads /proc/self/pagemap)
	 * is listed once, with the demand metrics' use, above. */
};

static const struct seccomp_rule vcpu_rules[] = {
	ALLOW_IOCTL(KVM_RUN, "runs the guest; every exit comes back here"),
	ALLOW_IOCTL(KVM_SIGNAL_MSI, "split irqchip: mote's IOAPIC sends the serial and i8042 "
				    "interrupts, and edges held while a pin was masked"),
	ALLOW(write, "serial output to stdout, interrupts (irqfd), exit eventfd, log lines and "
		     "register dumps to stderr, the --seccomp-debug SIGSYS message"),
	ALLOW(futex, "locks shared with the VMM thread and other vCPUs (serial, virtio device, "
		     "stderr)"),
	ALLOW(clock_gettime, "first-KVM_RUN and boot-timer stamps, log timestamps; normally the "
			     "vDSO"),
	ALLOW(rt_sigreturn, "return from the kick handler that interrupts KVM_RUN"),
	ALLOW_IOCTL(KVM_GET_REGS, "register dump (SIGUSR1, guest crash) and int3 emulation"),
	ALLOW_IOCTL(KVM_GET_SREGS, "register dump (SIGUSR1, guest crash) and int3 emulation"),
	ALLOW_IOCTL(KVM_TRANSLATE, "int3 emulation reads the instruction at rip"),
	ALLOW_IOCTL(KVM_GET_VCPU_EVENTS, "int3 emulation injects #BP"),
	ALLOW_IOCTL(KVM_SET_VCPU_EVENTS, "int3 emulation injects #BP"),
	ALLOW_IOCTL(KVM_SET_REGS, "int3 emulation steps past the 0xCC"),
	ALLOW(io_uring_enter, "the guest resets a virtio-blk device (status 0) with I/O in "
			      "flight: blk_reset drains it on the vCPU that wrote the register"),
	ALLOW(timerfd_settime, "the guest resets a virtio-blk device: blk_reset disarms the "
			       "rate-limit timer"),
	ALLOW(rt_sigprocmask, "thread exit: glibc blocks signals before tearing the thread down"),
	ALLOW_ARG(madvise, 2, MADV_DONTNEED, "thread exit: glibc gives back the thread stack's "
					     "pages"),
	ALLOW(exit, "thread exit"),
	ALLOW(exit_group, "the --seccomp-debug SIGSYS handler's _exit on this thread"),
	ALLOW(close, "the guest resets its virtio-vsock device (status 0): vsock_reset closes "
		     "every stream's host socket"),
};

/* The API thread's malloc comes from the main arena (main() sets
 * M_ARENA_MAX to 1), so it needs no arena mmap/mprotect. */
static const struct seccomp_rule api_rules[] = {
	ALLOW(epoll_wait, "api_thread_main waits on the listening socket and connections"),
	ALLOW(accept4, "new API connections"),
	ALLOW(recvfrom, "reading requests (recv)"),
	ALLOW(sendto, "writing responses (send)"),
	ALLOW(epoll_ctl, "adding, re-arming and removing connections"),
	ALLOW(close, "closing connections"),
	ALLOW(futex, "the request queue's lock and the condition variable the API thread "
		     "waits on for the VMM thread's answer"),
	ALLOW(write, "the eventfd that wakes the VMM thread; log lines to stderr; the "
		     "--seccomp-debug SIGSYS message"),
	ALLOW(clock_gettime, "connection idle times; normally the vDSO"),
	ALLOW(brk, "malloc: request buffers and parsed JSON (jansson)"),
	ALLOW_ARG(mmap, 2, PROT_READ | PROT_WRITE, "malloc of large blocks (never executable)"),
	ALLOW(munmap, "free() of large blocks"),
	ALLOW_ARG(madvise, 2, MADV_DONTNEED, "free() trims the heap; thread exit gives back its "
					     "stack"),
	ALLOW(unlink, "removing the API socket file when the API stops"),
	ALLOW(rt_sigprocmask, "thread exit: glibc blocks signals before tearing the thread down"),
	ALLOW(exit, "thread exit when the monitor stops"),
	ALLOW(exit_group, "the --seccomp-debug SIGSYS handler's _exit on this thread"),
};

static const struct seccomp_filter_def {
	const char *name;
	const struct seccomp_rule *rules;
	size_t nr_rules;
	unsigned firecracker; /* distinct syscalls in Firecracker's filter */
} filters[SECCOMP_NR_THREADS] = {
	[SECCOMP_VMM] = { "vmm", vmm_rules, ARRAY_SIZE(vmm_rules), 50 },
	[SECCOMP_VCPU] = { "vcpu", vcpu_rules, ARRAY_SIZE(vcpu_rules), 27 },
	[SECCOMP_API] = { "api", api_rules, ARRAY_SIZE(api_rules), 31 },
};

/* Set by seccomp_prepare on the main thread before the filtered threads
 * exist; read-only afterwards. */
static bool prepared;
static enum seccomp_mode prepared_mode = SECCOMP_OFF;
static struct sock_fprog progs[SECCOMP_NR_THREADS];

/* Defined by the generated file linked into mote; absent elsewhere. */
extern const struct seccomp_precompiled mote_seccomp_precompiled __attribute__((weak));

const struct seccomp_precompiled *seccomp_precompiled(void)
{
	return &mote_seccomp_precompiled ? &mote_seccomp_precompiled : NULL;
}
static int selftest_kind = -1;

/* TRAP mode: what the SIGSYS handler prints, resolved ahead of time
 * because libseccomp's resolver allocates. */
#define SECCOMP_NAMES_MAX 512
static char *syscall_names[SECCOMP_NAMES_MAX];
static __thread const char *thread_kind_name;

const char *seccomp_thread_name(enum seccomp_thread kind)
{
	return kind < SECCOMP_NR_THREADS ? filters[kind].name : NULL;
}

size_t seccomp_rules(enum seccomp_thread kind, const struct seccomp_rule **rules)
{
	if (kind >= SECCOMP_NR_THREADS)
		return 0;
	*rules = filters[kind].rules;
	return filters[kind].nr_rules;
}

static bool seen_before(const struct seccomp_rule *rules, size_t i)
{
	for (size_t j = 0; j < i; j++)
		if (rules[j].nr == rules[i].nr)
			return true;
	return false;
}

unsigned seccomp_count_syscalls(enum seccomp_thread kind)
{
	const struct seccomp_rule *rules;
	size_t n = seccomp_rules(kind, &rules);
	unsigned count = 0;

	for (size_t i = 0; i < n; i++)
		count += !seen_before(rules, i);
	return count;
}

unsigned seccomp_firecracker_count(enum seccomp_thread kind)
{
	return kind < SECCOMP_NR_THREADS ? filters[kind].firecracker : 0;
}

#define PRINT_NAME_WIDTH 26
#define PRINT_WIDTH 79

/* "  name   who needs it", the comment wrapped at word boundaries. */
static void seccomp_print_rule(FILE *f, const char *what, const char *why)
{
	int col = fprintf(f, "  %-*s", PRINT_NAME_WIDTH, what);
	const char *p = why;

	while (*p) {
		size_t word = strcspn(p, " ");
		if (col + 1 + (int)word > PRINT_WIDTH && col > PRINT_NAME_WIDTH + 2)
			col = fprintf(f, "\n  %-*s", PRINT_NAME_WIDTH, "") - 1;
		col += fprintf(f, " %.*s", (int)word, p);
		p += word;
		p += strspn(p, " ");
	}
	fputc('\n', f);
}

int seccomp_print(FILE *f)
{
	fprintf(f, "mote seccomp filters: one allowlist per thread kind; any other syscall kills\n"
		   "the process (exit status %d = 128+SIGSYS; --seccomp-debug names the syscall,\n"
		   "--no-seccomp turns the filters off).\n",
		SECCOMP_EXIT_CODE);
	for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
		const struct seccomp_filter_def *d = &filters[k];

		fprintf(f, "\n%s thread: %u syscalls (Firecracker's %s filter: %u)\n", d->name,
			seccomp_count_syscalls(k), d->name, d->firecracker);
		for (size_t i = 0; i < d->nr_rules; i++) {
			const struct seccomp_rule *r = &d->rules[i];
			char what[64];

			if (r->arg >= 0)
				snprintf(what, sizeof(what), "%s %s", r->name, r->value_name);
			else
				snprintf(what, sizeof(what), "%s", r->name);
			seccomp_print_rule(f, what, r->why);
		}
	}
	return ferror(f) ? -EIO : 0;
}

/* libseccomp exports raw BPF only to an fd (seccomp_export_bpf_mem is
 * 2.6+): a memfd, read back into memory the process keeps. */
static int seccomp_export(scmp_filter_ctx ctx, struct sock_fprog *out)
{
	int fd = memfd_create("mote-seccomp", MFD_CLOEXEC);
	int ret;

	if (fd < 0)
		return -errno;
	ret = seccomp_export_bpf(ctx, fd);
	if (ret)
		goto out;
	off_t len = lseek(fd, 0, SEEK_END);
	if (len <= 0 || len % (off_t)sizeof(struct sock_filter) ||
	    len / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
		ret = -EINVAL;
		goto out;
	}
	struct sock_filter *insns = malloc((size_t)len);
	if (!insns) {
		ret = -ENOMEM;
		goto out;
	}
	if (pread(fd, insns, (size_t)len, 0) != len) {
		free(insns);
		ret = -EIO;
		goto out;
	}
	out->filter = insns;
	out->len = (unsigned short)(len / (off_t)sizeof(struct sock_filter));
out:
	close(fd);
	return ret;
}

int seccomp_compile_table(enum seccomp_thread kind, enum seccomp_mode mode,
			  struct sock_fprog *out)
{
	if (kind >= SECCOMP_NR_THREADS || (mode != SECCOMP_KILL && mode != SECCOMP_TRAP))
		return -EINVAL;
	const struct seccomp_filter_def *d = &filters[kind];
	scmp_filter_ctx ctx = seccomp_init(mode == SECCOMP_TRAP ? SCMP_ACT_TRAP
								: SCMP_ACT_KILL_PROCESS);
	int ret = 0;

	if (!ctx)
		return -EINVAL;
	/* A binary tree of syscall numbers instead of a list: loading a
	 * filter makes the kernel run it for every syscall number (the
	 * seccomp action cache), so its cost grows with the path length, not
	 * just the size: measured here 125-300 us per thread as a list. */
	ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	for (size_t i = 0; i < d->nr_rules && !ret; i++) {
		const struct seccomp_rule *r = &d->rules[i];

		if (r->arg >= 0) {
			/* Spelled out: clang flags SCMP_CMP64's missing datum_b. */
			struct scmp_arg_cmp cmp = { .arg = (unsigned)r->arg, .op = SCMP_CMP_EQ,
						    .datum_a = r->value, .datum_b = 0 };
			ret = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, r->nr, 1, cmp);
		}
		else
			ret = seccomp_rule_add_exact(ctx, SCMP_ACT_ALLOW, r->nr, 0);
		if (!ret && !seen_before(d->rules, i))
			ret = seccomp_syscall_priority(ctx, r->nr, (uint8_t)(255 - i));
	}
	if (!ret)
		ret = seccomp_export(ctx, out);
	seccomp_release(ctx);
	return ret;
}

static size_t put_str(char *buf, size_t pos, size_t cap, const char *s)
{
	while (*s && pos < cap)
		buf[pos++] = *s++;
	return pos;
}

static size_t put_num(char *buf, size_t pos, size_t cap, unsigned long long v, unsigned base)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n > 0 && pos < cap)
		buf[pos++] = tmp[--n];
	return pos;
}

/* Async-signal-safe: formats by hand, one write(2), then _exit. */
static void seccomp_on_sigsys(int sig, siginfo_t *si, void *uctx)
{
	const ucontext_t *uc = uctx;
	char msg[192];
	size_t n = 0, cap = sizeof(msg) - 1;
	int nr = si->si_syscall;

	(void)sig;
	n = put_str(msg, n, cap, "mote: seccomp: thread ");
	n = put_str(msg, n, cap, thread_kind_name ? thread_kind_name : "(unfiltered)");
	n = put_str(msg, n, cap, " made forbidden syscall ");
	if (nr >= 0 && nr < SECCOMP_NAMES_MAX && syscall_names[nr]) {
		n = put_str(msg, n, cap, syscall_names[nr]);
		n = put_str(msg, n, cap, " (");
		n = put_num(msg, n, cap, (unsigned)nr, 10);
		n = put_str(msg, n, cap, ")");
	} else {
		n = put_num(msg, n, cap, (unsigned)nr, 10);
	}
	if (nr == SCMP_SYS(ioctl) || nr == SCMP_SYS(madvise)) {
		int reg = nr == SCMP_SYS(ioctl) ? REG_RSI : REG_RDX;
		n = put_str(msg, n, cap, nr == SCMP_SYS(ioctl) ? " request 0x" : " advice 0x");
		n = put_num(msg, n, cap, (unsigned long long)uc->uc_mcontext.gregs[reg], 16);
	}
	msg[n++] = '\n';
	if (write(STDERR_FILENO, msg, n) < 0) {
		/* nothing left to report it to */
	}
	_exit(SECCOMP_EXIT_CODE);
}

static int seccomp_setup_trap(void)
{
	struct sigaction sa = { .sa_sigaction = seccomp_on_sigsys, .sa_flags = SA_SIGINFO };

	for (int nr = 0; nr < SECCOMP_NAMES_MAX; nr++)
		if (!syscall_names[nr])
			syscall_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	sigfillset(&sa.sa_mask);
	return sigaction(SIGSYS, &sa, NULL) < 0 ? -errno : 0;
}

bool seccomp_available(void)
{
	return !SECCOMP_UNDER_ASAN;
}

int seccomp_prepare(enum seccomp_mode mode)
{
	const char *selftest = getenv("MOTE_SECCOMP_SELFTEST");
	int ret = 0;

	/* Prepared early for the API thread, then again at boot: once is
	 * enough, and threads may be installing the compiled programs. */
	if (prepared && mode == prepared_mode)
		return 0;

	for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++) {
		/* Compiled here (malloc'ed) only without build-time ones. */
		if (!seccomp_precompiled())
			free(progs[k].filter);
		progs[k] = (struct sock_fprog){ 0 };
	}
	prepared = false;
	prepared_mode = mode;
	selftest_kind = -1;
	for (unsigned k = 0; selftest && k < SECCOMP_NR_THREADS; k++)
		if (strcmp(selftest, filters[k].name) == 0)
			selftest_kind = (int)k;
	if (mode != SECCOMP_OFF && !seccomp_available()) {
		log_warn("seccomp filters are off in AddressSanitizer builds");
		mode = prepared_mode = SECCOMP_OFF;
	}
	if (mode == SECCOMP_OFF) {
		prepared = true;
		return 0;
	}
	if (mode == SECCOMP_TRAP)
		ret = seccomp_setup_trap();
	const struct seccomp_precompiled *pre = seccomp_precompiled();
	if (pre && !ret) {
		/* The program text is const; the kernel copies it at load. */
		for (unsigned k = 0; k < SECCOMP_NR_THREADS; k++)
			progs[k] = (struct sock_fprog){
				.len = pre->len[mode][k],
				.filter = (struct sock_filter *)pre->insns[mode][k],
			};
		log_debug("seccomp: filters compiled at build time (libseccomp %s)",
			  pre->libseccomp_version);
	} else {
		for (unsigned k = 0; k < SECCOMP_NR_THREADS && !ret; k++)
			ret = seccomp_compile_table(k, mode, &progs[k]);
	}
	prepared = ret == 0;
	return ret;
}

int seccomp_install(enum seccomp_thread kind)
{
	if (!prepared || kind >= SECCOMP_NR_THREADS)
		return -EINVAL;
	if (prepared_mode == SECCOMP_OFF)
		return 0;
	thread_kind_name = filters[kind].name;
	/* Required to filter without CAP_SYS_ADMIN; mote never execs. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -errno;
	/* flags 0: this thread only, no TSYNC. */
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &progs[kind]))
		return -errno;
	if (selftest_kind == (int)kind)
		syscall(SYS_getppid); /* not on any list: must not return */
	return 0;
}
