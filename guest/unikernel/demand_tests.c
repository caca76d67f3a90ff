/*
 * demand_tests.c - workloads for the host's demand metrics (metrics/ in
 * mote), with their heavy part at CPL3 (user.c), where guest code runs
 * natively on the development machines:
 *
 *   test=duty work_us=4000 sleep_us=1000 secs=N
 *       Repeats: a fixed amount of work (a loop count calibrated at boot to
 *       take work_us on an idle CPU), then sleep_us in hlt, woken by the
 *       LAPIC timer (one-shot). Under contention the work takes longer but
 *       stays the same amount, as in the paper's experiment. secs=0 runs
 *       forever. switch_s=S work2_us=W sleep2_us=Z: after S seconds the
 *       cycle becomes W + Z. timed=1: the work lasts work_us of wall-clock
 *       time instead (an exact duty cycle alone, whatever the CPU's speed;
 *       not a fixed amount of work under contention). cputime=1: the work
 *       lasts work_us of the guest's own running time (see cpu_work): an
 *       exact duty cycle alone and under contention, whatever the CPU's
 *       speed, which a fixed loop count is not on a host whose speed
 *       changes (below).
 *   test=touch mb=32 at_mb=64 pause_ms=100 secs=N
 *       Writes one byte in every 4 KiB page of [at_mb, at_mb + mb) MiB,
 *       sleeps pause_ms, repeats: a working set of exactly mb MiB (plus
 *       the guest image's few pages). Each pass first checks that every
 *       page still holds what the previous pass wrote (so a host that
 *       loses a written page, e.g. by zapping a restored clone's private
 *       copy, fails the test: "bad=N"). read_mb=R read_at_mb=A also reads
 *       one byte of every page of [A, A + R) MiB each pass (pages a clone
 *       only reads stay the snapshot file's).
 *
 * Both print "<name>: running ..." once calibrated, and at the end
 * "<name>: done ..." and exit 0.
 */
#include "guest.h"
#include "user.h"
#include "virtio.h"

#define LAPIC_BASE        0xfee00000u
#define LAPIC_SVR         0x0f0
#define LAPIC_EOI         0x0b0
#define LAPIC_LVT_TIMER   0x320
#define LAPIC_LVT_LINT0   0x350
#define LAPIC_TIMER_INIT  0x380
#define LAPIC_TIMER_CUR   0x390
#define LAPIC_TIMER_DIV   0x3e0
#define LAPIC_LVT_MASKED  0x10000u
#define LAPIC_SVR_ENABLE  0x100
#define LAPIC_TIMER_DIV_1 0xb
/* KVM's LAPIC timer counts at 1 GHz with divide-by-1: one count per ns. */
#define LAPIC_NS_PER_COUNT 1

#define CALL_SLEEP_NS (USER_CALL_FIRST_FREE + 0)

/* ~1 ms rounds, the fastest of 8: long enough to read close to the
 * sustained speed (40 us rounds read ~35 % fast, 1 ms ones ~10 % on a
 * quiet host here), short enough that some round runs undisturbed when
 * the CPU is shared. The development host (itself a VM) runs this loop at
 * two speeds, ~0.55 and ~1.18 iterations per TSC tick, in phases of
 * 0.1 s to seconds: a loop count calibrated in a fast phase takes twice
 * its work_us of CPU in a slow one (a 50 % duty cycle becomes ~68 %). */
#define CALIB_ITERS   2500000ULL
#define CALIB_ROUNDS  8
#define PAGE          4096ULL
#define MIB           (1ULL << 20)

/* cputime=1: the work is done in chunks of CHUNK_ITERS (~20-40 us); a
 * chunk is credited with its TSC time unless it took over CHUNK_SLOW
 * times the median of the last CHUNK_HIST chunks, i.e. the vCPU was
 * descheduled in it: then it is credited with that median. The median
 * follows the CPU's speed changes within a few chunks (they are 2.2x
 * here, below CHUNK_SLOW). */
#define CHUNK_ITERS 50000ULL
#define CHUNK_HIST  15
#define CHUNK_SLOW  3

static uint8_t demand_user_stack[16384] __attribute__((aligned(16)));

static uint64_t tsc_per_us;      /* calibrated against the LAPIC timer */
static uint64_t halted_tsc;      /* time spent in sleep_ns, for the report */

static uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}

static void lapic_write(uint32_t reg, uint32_t value)
{
	mmio_write32(LAPIC_BASE + reg, value);
}

static void timer_init(void)
{
	idt_install_irq_gates();
	lapic_write(LAPIC_LVT_LINT0, LAPIC_LVT_MASKED); /* see ioapic.c */
	lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | IRQ_VECTOR_SPURIOUS);
	lapic_write(LAPIC_TIMER_DIV, LAPIC_TIMER_DIV_1);
}

/* The LAPIC timer's current count and the TSC at the same instant: of a
 * few reads, the one with the least TSC time around it. Each read exits
 * to the host, which may deschedule the vCPU on the way back: a TSC read
 * after it then lies up to a host time slice later (on a core shared by
 * four booting VMs one calibration read 36226 ticks/us instead of ~2448,
 * and its VM ran 15 times its secs=). */
static void lapic_tsc_pair(uint32_t *count, uint64_t *tsc)
{
	uint64_t best = ~0ULL;

	for (int i = 0; i < 5; i++) {
		uint64_t a = cpu_rdtsc();
		uint32_t c = lapic_read(LAPIC_TIMER_CUR);
		uint64_t b = cpu_rdtsc();
		if (b - a < best) {
			best = b - a;
			*count = c;
			*tsc = a + (b - a) / 2;
		}
	}
}

/*
 * TSC ticks per microsecond: the TSC against the LAPIC timer's current
 * count over ~2 ms of busy waiting. Both are wall clocks, so being
 * descheduled in between does not bias it (a hlt-based wait would), as
 * long as each end's two readings are taken together (lapic_tsc_pair).
 */
static void tsc_calibrate(void)
{
	uint32_t c0 = 0, c1 = 0;
	uint64_t t0 = 0, t1 = 0;

	lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | IRQ_VECTOR_TIMER);
	lapic_write(LAPIC_TIMER_INIT, 0xffffffffu);
	lapic_tsc_pair(&c0, &t0);
	do {
		c1 = lapic_read(LAPIC_TIMER_CUR);
	} while (c0 - c1 < 2000000u);
	lapic_tsc_pair(&c1, &t1);
	lapic_write(LAPIC_TIMER_INIT, 0);
	uint64_t ns = (uint64_t)(c0 - c1) * LAPIC_NS_PER_COUNT;
	tsc_per_us = (t1 - t0) * 1000 / ns;
	if (!tsc_per_us)
		tsc_per_us = 1;
}

/* One-shot LAPIC timer, then hlt with interrupts on until it fired. */
static void sleep_ns(uint64_t ns)
{
	uint32_t before = irq_timer_ticks;

	if (ns > 0xffffffffu)
		ns = 0xffffffffu;
	if (!ns)
		return;
	uint64_t t0 = cpu_rdtsc();
	lapic_write(LAPIC_LVT_TIMER, IRQ_VECTOR_TIMER); /* one-shot, unmasked */
	lapic_write(LAPIC_TIMER_INIT, (uint32_t)ns);
	while (irq_timer_ticks == before) {
		cpu_sti_hlt();
		cpu_cli();
	}
	halted_tsc += cpu_rdtsc() - t0;
}

static uint64_t demand_call(uint64_t nr, uint64_t a0, uint64_t a1)
{
	(void)a1;
	switch (nr) {
	case CALL_SLEEP_NS:
		sleep_ns(a0);
		return 0;
	default:
		return (uint64_t)-EINVAL;
	}
}

/* ---- CPL3 ------------------------------------------------------------------ */

/* n iterations of a dependent add the compiler cannot drop; returns
 * the sum 0 + 1 + ... + (n - 1), which the host can check. */
static uint64_t __attribute__((noinline)) spin(uint64_t n)
{
	uint64_t x = 0;

	for (uint64_t i = 0; i < n; i++)
		__asm__ volatile("add %1, %0" : "+r"(x) : "r"(i));
	return x;
}

/* Fewest TSC ticks for CALIB_ITERS over many short rounds: some round
 * ran undisturbed even if the host CPU is shared. */
static uint64_t user_calibrate(uint64_t unused)
{
	uint64_t best = ~0ULL;

	(void)unused;
	for (int r = 0; r < CALIB_ROUNDS; r++) {
		uint64_t t0 = cpu_rdtsc();
		spin(CALIB_ITERS);
		uint64_t dt = cpu_rdtsc() - t0;
		if (dt < best)
			best = dt;
	}
	return best;
}

struct duty_args {
	uint64_t work_iters;
	uint64_t sleep_ns;
	uint64_t end_tsc;    /* 0: forever */
	uint64_t switch_tsc; /* then work2/sleep2 (0: never) */
	uint64_t work2_iters;
	uint64_t sleep2_ns;
	uint64_t checksum;   /* sum of every cycle's spin result */
	uint64_t work_tsc;   /* timed=1: work for this many TSC ticks instead */
	uint64_t cpu_tsc;    /* cputime=1: work for this much running time */
	uint64_t cpu2_tsc;   /* and after the switch */
	uint64_t chunks;     /* cputime=1: chunks spun (each adds spin(CHUNK_ITERS)) */
	uint64_t chunk_tsc[CHUNK_HIST]; /* the last chunks' TSC times */
	unsigned chunk_head;
};

static struct duty_args duty;

static uint64_t chunk_median(void)
{
	uint64_t v[CHUNK_HIST];

	for (unsigned i = 0; i < CHUNK_HIST; i++) {
		unsigned j = i;
		for (; j > 0 && v[j - 1] > duty.chunk_tsc[i]; j--)
			v[j] = v[j - 1];
		v[j] = duty.chunk_tsc[i];
	}
	return v[CHUNK_HIST / 2];
}

/* cputime=1: spins until it has run for `want` TSC ticks of its own. The
 * guest cannot see the host deschedule it, but a chunk that was
 * interrupted that way takes far longer than its neighbours (the host's
 * slices are milliseconds). Host interrupts and exits inside a chunk are
 * the vCPU's CPU time on the host too, and stay counted. */
static void cpu_work(uint64_t want)
{
	uint64_t done = 0;

	while (done < want) {
		uint64_t med = chunk_median();
		uint64_t t0 = cpu_rdtsc();
		duty.checksum += spin(CHUNK_ITERS);
		duty.chunks++;
		uint64_t dt = cpu_rdtsc() - t0;
		duty.chunk_tsc[duty.chunk_head] = dt;
		duty.chunk_head = (duty.chunk_head + 1) % CHUNK_HIST;
		done += dt > CHUNK_SLOW * med ? med : dt;
	}
}

static uint64_t user_duty(uint64_t unused)
{
	uint64_t cycles = 0;

	(void)unused;
	do {
		if (duty.switch_tsc && cpu_rdtsc() >= duty.switch_tsc) {
			duty.work_iters = duty.work2_iters;
			duty.sleep_ns = duty.sleep2_ns;
			if (duty.cpu_tsc)
				duty.cpu_tsc = duty.cpu2_tsc;
			duty.switch_tsc = 0;
		}
		if (duty.cpu_tsc) {
			cpu_work(duty.cpu_tsc);
		} else if (duty.work_tsc) {
			/* Wall-clock work: exactly work_us alone, whatever the
			 * CPU's speed; under contention it does less. */
			uint64_t until = cpu_rdtsc() + duty.work_tsc;
			while (cpu_rdtsc() < until)
				duty.checksum += spin(1000);
		} else {
			duty.checksum += spin(duty.work_iters);
		}
		user_call(CALL_SLEEP_NS, duty.sleep_ns, 0);
		cycles++;
	} while (!duty.end_tsc || cpu_rdtsc() < duty.end_tsc);
	return cycles;
}

struct touch_args {
	volatile uint8_t *base;
	uint64_t bytes;
	volatile uint8_t *read_base;
	uint64_t read_bytes;
	uint64_t bad;          /* pages that lost the previous pass's byte */
	uint64_t read_sum;
	uint64_t pause_ns;
	uint64_t end_tsc;
};

static struct touch_args touch;

static uint64_t user_touch(uint64_t unused)
{
	uint64_t passes = 0;

	(void)unused;
	do {
		for (uint64_t off = 0; off < touch.bytes; off += PAGE) {
			if (passes && touch.base[off] != (uint8_t)(passes - 1 + (off >> 12)))
				touch.bad++;
			touch.base[off] = (uint8_t)(passes + (off >> 12));
		}
		for (uint64_t off = 0; off < touch.read_bytes; off += PAGE)
			touch.read_sum += touch.read_base[off];
		passes++;
		user_call(CALL_SLEEP_NS, touch.pause_ns, 0);
	} while (!touch.end_tsc || cpu_rdtsc() < touch.end_tsc);
	return passes;
}

/* ---- CPL0 drivers ------------------------------------------------------------ */

static void demand_setup(void)
{
	user_init();
	user_set_call_handler(demand_call);
	timer_init();
	tsc_calibrate();
}

static uint64_t end_tsc_after(uint64_t secs)
{
	return secs ? cpu_rdtsc() + secs * 1000000ULL * tsc_per_us : 0;
}

static void *user_stack_top(void)
{
	return demand_user_stack + sizeof(demand_user_stack);
}

static int demand_duty(void)
{
	uint64_t work_us = cmdline_u64("work_us=", 4000);
	uint64_t sleep_us = cmdline_u64("sleep_us=", 1000);
	uint64_t secs = cmdline_u64("secs=", 10);
	/* A second phase after switch_s seconds (the placement experiment
	 * raises every VM's demand at once). */
	uint64_t switch_s = cmdline_u64("switch_s=", 0);
	uint64_t work2_us = cmdline_u64("work2_us=", work_us);
	uint64_t sleep2_us = cmdline_u64("sleep2_us=", sleep_us);

	demand_setup();
	uint64_t ticks = user_run(user_calibrate, 0, user_stack_top());
	/* iterations per us = CALIB_ITERS / (ticks / tsc_per_us) */
	duty.work_iters = work_us * CALIB_ITERS * tsc_per_us / (ticks ? ticks : 1);
	duty.sleep_ns = sleep_us * 1000;
	duty.work2_iters = work2_us * CALIB_ITERS * tsc_per_us / (ticks ? ticks : 1);
	duty.sleep2_ns = sleep2_us * 1000;
	duty.switch_tsc = switch_s ? end_tsc_after(switch_s) : 0;
	duty.work_tsc = cmdline_u64("timed=", 0) ? work_us * tsc_per_us : 0;
	duty.cpu_tsc = cmdline_u64("cputime=", 0) ? work_us * tsc_per_us : 0;
	duty.cpu2_tsc = work2_us * tsc_per_us;
	/* The chunks' first median: the calibrated speed. */
	for (unsigned i = 0; i < CHUNK_HIST; i++)
		duty.chunk_tsc[i] = (ticks ? ticks : 1) * CHUNK_ITERS / CALIB_ITERS;
	serial_printf("duty: running work_us=%lu sleep_us=%lu iters=%lu tsc_per_us=%lu\n",
		      (unsigned long)work_us, (unsigned long)sleep_us,
		      (unsigned long)duty.work_iters, (unsigned long)tsc_per_us);
	uint64_t t0 = cpu_rdtsc();
	halted_tsc = 0;
	duty.end_tsc = end_tsc_after(secs);
	uint64_t cycles = user_run(user_duty, 0, user_stack_top());
	uint64_t ms = (cpu_rdtsc() - t0) / tsc_per_us / 1000;
	/* busy_pct: the guest's own view of its duty cycle (time outside
	 * the sleeps); alone on a CPU, the host's usage should match it. */
	uint64_t halted_ms = halted_tsc / tsc_per_us / 1000;
	/* checksum: cycles x spin(iters) for a calibrated loop; with
	 * cputime=1, chunks x spin(chunk_iters) (a host can check either). */
	serial_printf("duty: done cycles=%lu elapsed_ms=%lu halted_ms=%lu busy_pct=%lu "
		      "checksum=%lx chunks=%lu chunk_iters=%lu\n",
		      (unsigned long)cycles, (unsigned long)ms, (unsigned long)halted_ms,
		      (unsigned long)(ms ? (ms - halted_ms) * 100 / ms : 0),
		      (unsigned long)duty.checksum, (unsigned long)duty.chunks,
		      (unsigned long)CHUNK_ITERS);
	return GUEST_EXIT_PASS;
}

static int demand_touch(void)
{
	uint64_t mb = cmdline_u64("mb=", 32);
	uint64_t at_mb = cmdline_u64("at_mb=", 64);
	uint64_t pause_ms = cmdline_u64("pause_ms=", 100);
	uint64_t secs = cmdline_u64("secs=", 10);
	uint64_t read_mb = cmdline_u64("read_mb=", 0);
	uint64_t read_at_mb = cmdline_u64("read_at_mb=", at_mb + mb);

	if (!mb || at_mb < 4 || at_mb + mb > 3072 ||
	    (read_mb && (read_at_mb < 4 || read_at_mb + read_mb > 3072 ||
			 (read_at_mb < at_mb + mb && at_mb < read_at_mb + read_mb)))) {
		serial_printf("TEST FAIL touch: bad range at_mb=%lu mb=%lu\n",
			      (unsigned long)at_mb, (unsigned long)mb);
		return GUEST_EXIT_BAD_CMDLINE;
	}
	demand_setup();
	if (user_map(at_mb * MIB, mb * MIB) ||
	    (read_mb && user_map(read_at_mb * MIB, read_mb * MIB))) {
		serial_printf("TEST FAIL touch: cannot map the range\n");
		return GUEST_EXIT_FAIL;
	}
	touch.base = (volatile uint8_t *)(uintptr_t)(at_mb * MIB);
	touch.bytes = mb * MIB;
	touch.pause_ns = pause_ms * 1000000ULL;
	touch.read_base = (volatile uint8_t *)(uintptr_t)(read_at_mb * MIB);
	touch.read_bytes = read_mb * MIB;
	serial_printf("touch: running mb=%lu at_mb=%lu pause_ms=%lu\n", (unsigned long)mb,
		      (unsigned long)at_mb, (unsigned long)pause_ms);
	touch.end_tsc = end_tsc_after(secs);
	uint64_t passes = user_run(user_touch, 0, user_stack_top());
	serial_printf("touch: done passes=%lu bad=%lu\n", (unsigned long)passes,
		      (unsigned long)touch.bad);
	if (touch.bad) {
		serial_printf("TEST FAIL touch: %lu page(s) lost what the previous pass wrote\n",
			      (unsigned long)touch.bad);
		return GUEST_EXIT_FAIL;
	}
	return GUEST_EXIT_PASS;
}

static int demand_name_is(const char *name, size_t len, const char *want)
{
	return len == lib_strlen(want) && memcmp(name, want, len) == 0;
}

int demand_test_run(const char *name, size_t len, int *code)
{
	if (demand_name_is(name, len, "duty"))
		*code = demand_duty();
	else if (demand_name_is(name, len, "touch"))
		*code = demand_touch();
	else
		return 0;
	return 1;
}
