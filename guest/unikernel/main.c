/*
 * main.c - entry in C, command line parsing and the test scenarios.
 *
 * The command line selects one scenario with a token "test=<name>":
 *   hello, smp, triple-fault, int3, ud2, spin, cpuid, wait-ctrl-alt-del, exit:<N>,
 *   the virtio-blk scenarios blk-* (blk_tests.c), the virtio-net
 *   scenarios net-* (net_tests.c) and the snapshot scenarios snap-*
 *   (snap_tests.c).
 * Results are reported on COM1 and through the exit port (0xf4).
 */
#include "guest.h"
#include "vsock.h"

/* Firecracker-style boot timer: one byte of 123 once guest code runs. */
#define BOOT_TIMER_MMIO  0xc0000000u
#define BOOT_TIMER_VALUE 123

#define TEST_PREFIX     "test="
#define EXIT_PREFIX     "exit:"
#define EXIT_PREFIX_LEN 5

static int main_name_is(const char *name, size_t len, const char *want)
{
	size_t want_len = lib_strlen(want);

	return len == want_len && memcmp(name, want, len) == 0;
}

static int main_test_hello(const struct hvm_start_info *si, const char *cmdline)
{
	serial_printf("mote-guest: hello from PVH guest, cmdline='%s'\n",
		      cmdline);
	if (si->version >= 1 && si->memmap_paddr && si->memmap_entries) {
		const struct hvm_memmap_entry *map =
			(const void *)(uintptr_t)si->memmap_paddr;
		uint64_t ram = 0;

		for (uint32_t i = 0; i < si->memmap_entries; i++) {
			if (map[i].type == HVM_MEMMAP_TYPE_RAM)
				ram += map[i].size;
		}
		serial_printf("mote-guest: memmap entries=%u ram=%lu bytes (%lu MiB)\n",
			      si->memmap_entries, (unsigned long)ram,
			      (unsigned long)(ram >> 20));
	} else {
		serial_printf("mote-guest: no memmap (start_info version %u)\n",
			      si->version);
	}
	serial_printf("TEST PASS hello\n");
	return GUEST_EXIT_PASS;
}

static int main_test_triple_fault(void)
{
	serial_printf("guest: about to triple fault\n");
	/* #UD -> vector beyond the IDT limit -> #GP -> #DF -> shutdown. */
	idt_load_empty();
	__asm__ volatile("ud2");
	serial_printf("TEST FAIL triple-fault: still running\n");
	return GUEST_EXIT_FAIL;
}

static int main_test_int3(void)
{
	uint32_t before = idt_breakpoint_count;

	__asm__ volatile("int3" : : : "memory");
	if (idt_breakpoint_count != before + 1) {
		serial_printf("TEST FAIL int3: handler count %u\n",
			      idt_breakpoint_count - before);
		return GUEST_EXIT_FAIL;
	}
	serial_printf("int3: handler ran\n");
	serial_printf("TEST PASS int3\n");
	return GUEST_EXIT_PASS;
}

/* The exception path: #UD goes to the IDT handler, which exits with 3. */
static int main_test_ud2(void)
{
	serial_printf("guest: executing ud2\n");
	__asm__ volatile("ud2");
	serial_printf("TEST FAIL ud2: still running\n");
	return GUEST_EXIT_FAIL;
}

static void main_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
	__asm__ volatile("cpuid"
			 : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
			 : "a"(leaf), "c"(sub));
}

/* Prints what CPUID tells this vCPU, so the host can check the monitor's
 * CPUID (hypervisor bit, APIC id, template) from inside the guest. */
static int main_test_cpuid(void)
{
	uint32_t l1[4], l7[4];

	main_cpuid(1, 0, l1);
	main_cpuid(7, 0, l7);
	serial_printf("cpuid: apic_id=%u logical=%u hypervisor=%u xsave=%u popcnt=%u "
		      "leaf1.ecx=0x%x leaf7.ebx=0x%x\n",
		      l1[1] >> 24, (l1[1] >> 16) & 0xff, l1[2] >> 31, (l1[2] >> 26) & 1,
		      (l1[2] >> 23) & 1, l1[2], l7[1]);
	serial_printf("TEST PASS cpuid\n");
	return GUEST_EXIT_PASS;
}

/* Runs forever (hlt with interrupts off never wakes), so the host can
 * test stopping a busy VM from outside, e.g. with SIGTERM. */
static int main_test_spin(void)
{
	serial_printf("guest: spinning until the host stops the VM\n");
	for (;;)
		__asm__ volatile("pause");
	return GUEST_EXIT_FAIL;
}

/* Halts for good with interrupts off: a vCPU that costs the host nothing
 * (no timer, no exits). A snapshot of it is what the start-rate bench's
 * live clones restore, so what accumulates is the monitors, not guest
 * work. */
static int main_test_idle(void)
{
	serial_printf("guest: idle\n");
	for (;;)
		__asm__ volatile("cli; hlt");
	return GUEST_EXIT_FAIL;
}

#define I8042_DATA_PORT   0x60
#define I8042_STATUS_PORT 0x64
#define I8042_STATUS_OBF  0x01
#define POLL_PAUSES       256

/* Waits for the host's Ctrl+Alt+Del (the API's SendCtrlAltDel: scan code
 * set 2 make codes Ctrl 0x14, Alt 0x11, Delete 0xe0 0x71 in the i8042's
 * output buffer), then exits 0. Polls the status port: each poll is a VM
 * exit, and the pauses between polls keep the guest cheap (CPL0 is
 * emulated on the development machines). */
static int main_test_wait_ctrl_alt_del(void)
{
	static const uint8_t want[] = { 0x14, 0x11, 0xe0, 0x71 };
	unsigned matched = 0;
	uint64_t polls = 0;

	serial_printf("guest: waiting for ctrl-alt-del\n");
	while (matched < sizeof(want)) {
		polls++;
		if (!(io_in8(I8042_STATUS_PORT) & I8042_STATUS_OBF)) {
			for (int i = 0; i < POLL_PAUSES; i++)
				cpu_pause();
			continue;
		}
		uint8_t b = io_in8(I8042_DATA_PORT);

		if (b == want[matched])
			matched++;
		else
			matched = b == want[0] ? 1 : 0;
	}
	serial_printf("guest: got ctrl-alt-del after %lu polls\n", (unsigned long)polls);
	return GUEST_EXIT_PASS;
}

/* "exit:<N>": exit with N (0-255) so the host can check propagation. */
static int main_test_exit(const char *arg, size_t len)
{
	uint32_t code;

	if (lib_parse_u32(arg, len, &code) != 0 || code > 255) {
		serial_printf("TEST FAIL bad exit code in 'exit:");
		serial_write_bytes(arg, len);
		serial_printf("'\n");
		return GUEST_EXIT_BAD_CMDLINE;
	}
	serial_printf("guest: exiting with %u\n", code);
	return (int)code;
}

int main(uint32_t start_info_paddr)
{
	const struct hvm_start_info *si =
		(const void *)(uintptr_t)start_info_paddr;
	const char *cmdline = "";
	const char *name = "";
	size_t len = 0;
	int code;

	mmio_write8(BOOT_TIMER_MMIO, BOOT_TIMER_VALUE);
	idt_install();

	if (!si || si->magic != HVM_START_MAGIC) {
		serial_printf("TEST FAIL bad hvm_start_info at 0x%x\n",
			      start_info_paddr);
		guest_exit(GUEST_EXIT_BAD_CMDLINE);
	}
	if (si->cmdline_paddr)
		cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
	guest_cmdline = cmdline;
	cmdline_find(TEST_PREFIX, &name, &len); /* name stays "" when absent */

	if (main_name_is(name, len, "hello")) {
		code = main_test_hello(si, cmdline);
	} else if (main_name_is(name, len, "smp")) {
		code = smp_run_test();
	} else if (main_name_is(name, len, "triple-fault")) {
		code = main_test_triple_fault();
	} else if (main_name_is(name, len, "int3")) {
		code = main_test_int3();
	} else if (main_name_is(name, len, "cpuid")) {
		code = main_test_cpuid();
	} else if (main_name_is(name, len, "spin")) {
		code = main_test_spin();
	} else if (main_name_is(name, len, "idle")) {
		code = main_test_idle();
	} else if (main_name_is(name, len, "wait-ctrl-alt-del")) {
		code = main_test_wait_ctrl_alt_del();
	} else if (main_name_is(name, len, "ud2")) {
		code = main_test_ud2();
	} else if (main_name_is(name, len, "snap-compute")) {
		code = snap_compute();
	} else if (main_name_is(name, len, "snap-dirty")) {
		code = snap_dirty();
	} else if (main_name_is(name, len, "snap-random")) {
		code = snap_random();
	} else if (demand_test_run(name, len, &code)) {
		/* duty or touch ran */
	} else if (blk_test_run(name, len, &code)) {
		/* one of the blk-* scenarios ran */
	} else if (net_test_run(name, len, &code)) {
		/* one of the net-* scenarios ran */
	} else if (vsock_test_run(name, len, &code)) {
		/* vsock-echo or vsock-client ran */
	} else if (len >= EXIT_PREFIX_LEN &&
		   memcmp(name, EXIT_PREFIX, EXIT_PREFIX_LEN) == 0) {
		code = main_test_exit(name + EXIT_PREFIX_LEN,
				      len - EXIT_PREFIX_LEN);
	} else {
		serial_printf("TEST FAIL unknown scenario '");
		serial_write_bytes(name, len);
		serial_printf("'\n");
		code = GUEST_EXIT_BAD_CMDLINE;
	}
	guest_exit(code);
}
