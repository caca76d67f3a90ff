/* The floor of "exec -> first KVM_RUN" on this host: what any monitor pays
 * before its first guest instruction, whatever it does in user space.
 * The parent stamps CLOCK_MONOTONIC, forks and execs this static binary
 * again as the child, which does only what KVM requires: open /dev/kvm,
 * KVM_CREATE_VM, one memory slot (an anonymous mapping of MIB MiB: the
 * slot's cost grows with its size here, see below), one vCPU
 * with its kvm_run mapping and flat real-mode registers, then KVM_RUN on a
 * guest that is a single HLT. The child prints the time of each step since
 * the parent's stamp; the parent runs it N times and prints medians.
 *
 * Registering the slot costs time in proportion to its size on this host
 * (KVM allocates per-page reverse maps for its shadow paging up front):
 * compare a monitor with the floor of the same guest memory size.
 *
 * usage: kvmfloor [N [MIB]]    (N runs, default 30; MIB default 2;
 *                               built static by benches/boot/Makefile) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define STEPS 6
static const char *const step_names[STEPS] = {
	"exec -> main", "open /dev/kvm", "KVM_CREATE_VM", "memory slot",
	"KVM_CREATE_VCPU + regs", "first KVM_RUN entered",
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int child(uint64_t t0, size_t mem_size)
{
	uint64_t t[STEPS];

	t[0] = now_ns();
	int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	t[1] = now_ns();
	int vm = kvm < 0 ? -1 : ioctl(kvm, KVM_CREATE_VM, 0);
	t[2] = now_ns();
	if (vm < 0) {
		perror("kvmfloor: KVM_CREATE_VM");
		return 1;
	}
	uint8_t *mem = mmap(NULL, mem_size, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	mem[0x1000] = 0xf4; /* hlt */
	struct kvm_userspace_memory_region r = { .slot = 0, .memory_size = mem_size,
						 .userspace_addr = (uint64_t)(uintptr_t)mem };
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
		perror("kvmfloor: memory slot");
		return 1;
	}
	t[3] = now_ns();
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	int sz = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	struct kvm_run *run = vcpu < 0 || sz <= 0 ? MAP_FAILED
				: mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
	struct kvm_sregs sregs;
	if (run == MAP_FAILED || ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
		perror("kvmfloor: vCPU");
		return 1;
	}
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	struct kvm_regs regs = { .rip = 0x1000, .rflags = 2 };
	if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
		perror("kvmfloor: registers");
		return 1;
	}
	t[4] = now_ns();
	t[5] = now_ns(); /* stamped as mote stamps it: right before the ioctl */
	if (ioctl(vcpu, KVM_RUN, 0) < 0 || run->exit_reason != KVM_EXIT_HLT) {
		fprintf(stderr, "kvmfloor: KVM_RUN did not end in HLT\n");
		return 1;
	}
	for (int i = 0; i < STEPS; i++)
		printf("%llu%c", (unsigned long long)(t[i] - t0), i + 1 < STEPS ? ' ' : '\n');
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "--child") == 0)
		return child(strtoull(argv[2], NULL, 10), (size_t)strtoull(argv[3], NULL, 10) << 20);
	int n = argc > 1 ? atoi(argv[1]) : 30;
	if (n <= 0)
		n = 30;
	int mib = argc > 2 ? atoi(argv[2]) : 2;
	if (mib <= 0 || mib > 3072) {
		fprintf(stderr, "kvmfloor: MIB must be 1..3072 (one slot below the MMIO hole)\n");
		return 2;
	}
	char mib_arg[16];
	snprintf(mib_arg, sizeof(mib_arg), "%d", mib);
	uint64_t *v[STEPS];
	for (int s = 0; s < STEPS; s++)
		v[s] = calloc((size_t)n, sizeof(uint64_t));
	for (int i = 0; i < n; i++) {
		int p[2];
		char stamp[32];

		if (pipe(p) < 0)
			return 1;
		uint64_t t0 = now_ns();
		snprintf(stamp, sizeof(stamp), "%llu", (unsigned long long)t0);
		pid_t pid = fork();
		if (pid == 0) {
			dup2(p[1], 1);
			execl("/proc/self/exe", argv[0], "--child", stamp, mib_arg, (char *)NULL);
			_exit(127);
		}
		close(p[1]);
		char buf[256] = "";
		ssize_t len = read(p[0], buf, sizeof(buf) - 1);
		close(p[0]);
		int st;
		waitpid(pid, &st, 0);
		if (len <= 0 || !WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "kvmfloor: run %d failed\n", i);
			return 1;
		}
		char *q = buf;
		for (int s = 0; s < STEPS; s++)
			v[s][i] = strtoull(q, &q, 10);
	}
	printf("exec -> step, median of %d runs, %d MiB of guest memory (ms):\n", n, mib);
	for (int s = 0; s < STEPS; s++) {
		qsort(v[s], (size_t)n, sizeof(uint64_t), cmp_u64);
		printf("  %-26s %.3f\n", step_names[s], v[s][n / 2] / 1e6);
	}
	return 0;
}
