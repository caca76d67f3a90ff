/*
 * runtime.c - mote's function runtime, CPL0 part: boots (PVH, on the
 * unikernel's start.S and drivers), signals ready, then serves requests
 * over virtio-vsock (protocol.h) one at a time, running the function at
 * CPL3 (fnlib.c calls fn_handle).
 *
 * CPL0 code is emulated on the development machines (~260 ns an
 * instruction) while CPL3 code runs natively, so the runtime never
 * touches payload bytes itself: request bytes are copied out of the
 * vsock RX buffers by CPL3 code (the job's segments), the handler writes
 * its response where the runtime sends it from, and only headers and
 * error messages are handled here.
 *
 * Containment: the handler runs with interrupts on, so a one-shot LAPIC
 * timer at its deadline ends it (FN_TIMEOUT); any exception it raises
 * that is not a user call ends it too (FN_FAULT). Page 0 and a guard page
 * under the handler's stack are not user-accessible, so a NULL
 * dereference or a stack overflow faults; the runtime's own data and
 * stacks are closed to CPL3 and code is read-only there (protect_image),
 * so a wild write faults instead of corrupting the runtime.
 *
 * Streams: up to MAX_FCONN host connections may be open, each carrying
 * requests one after the other; one of them is served at a time (cur),
 * first come first served, and between two requests the turn passes to
 * a stream that has sent something. Only cur gets the credit for a whole
 * request; the others advertise WAIT_CREDIT, enough to see that they
 * want service, so waiting streams hold few RX buffers and the served
 * one can always make progress (a waiting stream that holds too many
 * anyway, bytes in flight when it lost its turn, is reset). After a snapshot restore the device
 * sends a transport reset: every stream is dropped and the runtime goes
 * on listening.
 *
 * Command line: fn_deadline_ms=N (default deadline, when a request says 0).
 */
#include "fn.h"
#include "fn_internal.h"
#include "guest.h"
#include "user.h"
#include "virtio.h"
#include "vsock.h"

#define BOOT_TIMER_MMIO  0xc0000000u
#define BOOT_TIMER_VALUE 123

#define LAPIC_BASE        0xfee00000u
#define LAPIC_LVT_TIMER   0x320
#define LAPIC_TIMER_INIT  0x380
#define LAPIC_TIMER_CUR   0x390
#define LAPIC_TIMER_DIV   0x3e0
#define LAPIC_LVT_MASKED  0x10000u
#define LAPIC_TIMER_DIV_1 0xb
/* KVM's LAPIC timer counts at 1 GHz with divide-by-1: a count is a ns. */
#define CALIB_COUNTS      500000u      /* 0.5 ms a round */
#define CALIB_ROUNDS      4

#define PTE_P     0x1ULL
#define PTE_RW    0x2ULL
#define PTE_US    0x4ULL
#define PTE_A     0x20ULL
#define PTE_D     0x40ULL
#define PTE_PS    0x80ULL
#define PTE_ADDR  0x000ffffffffff000ULL
#define PAGE      4096ULL
#define PAGE_2M   0x200000ULL

#define DEFAULT_DEADLINE_MS 3000
#define USER_STACK_SIZE (128 * 1024)
#define MAX_FCONN 64             /* as many as the driver's streams */
#define INBOX 256                /* RX buffers a stream can hold: the driver's maximum */
#define WAIT_HOLD_MAX 80         /* ... all streams but cur together (of 128) */
#define WAIT_CREDIT 4096         /* receive credit of a stream waiting for its turn */
/* Receive credit of the served stream: a whole request plus the next
 * header without waiting for a credit update. */
#define REQ_CREDIT (FN_MAX_REQUEST + 64 * 1024)
#define LOG_MAX 200

#define RESP_HDR ((uint32_t)sizeof(struct fn_response_hdr))
#define REQ_HDR  ((uint32_t)sizeof(struct fn_request_hdr))

enum fstate { ST_HDR, ST_BODY, ST_SEND, ST_CLOSING };

struct fconn {
	struct vsock_conn *vc;  /* NULL: free */
	uint32_t gen;           /* bumped at every accept: the slot may be reused
				 * while a handler runs (a stream reset meanwhile) */
	uint32_t seq;           /* accept order: streams are served first come first */
	enum fstate state;
	uint16_t q[INBOX];      /* held RX buffers, in stream order */
	uint32_t qhead, qlen, front_off;
	uint32_t unreported;    /* bytes consumed since the host last heard fwd_cnt */
	struct fn_request_hdr hdr;
	uint32_t hdr_have, body_have;
	uint32_t send_off, send_len;
	int close_after_send;
};

static struct fconn fconns[MAX_FCONN];
/* Open streams, and 1 + the highest slot in use: CPL0 code is emulated
 * here (~1-3 us an instruction), and the main loop looks for the next
 * stream to serve after every round, so no scan of all 64 slots when
 * one or two streams are open. */
static uint32_t nr_open, fconn_hi;
static struct fconn *cur;
static uint32_t next_seq;
static const uint8_t *rx_ptr[INBOX];
static uint32_t rx_len[INBOX];

/* Buffers whose bytes are all taken, given back after the copy job. */
static uint16_t rel_buf[INBOX];
static uint32_t rel_len[INBOX], nrel;

static uint8_t *req_area, *resp_area, *user_stack_top;
static uint64_t tsc_per_ms;
static uint64_t deadline_tsc;
static int in_handler;
static uint32_t default_deadline_ms;
static uint64_t requests, faults, timeouts;

/* A fault's details, from the fault handler. */
static uint64_t fault_vec, fault_rip, fault_err, fault_addr;

static struct vsock_conn *ready_conn;
static uint32_t ready_off;
static int vsock_up;

/* ---- LAPIC timer and TSC ------------------------------------------------- */

static uint32_t lapic_read(uint32_t reg)
{
	return mmio_read32(LAPIC_BASE + reg);
}

static void lapic_write(uint32_t reg, uint32_t value)
{
	mmio_write32(LAPIC_BASE + reg, value);
}

static int lvt_oneshot; /* LVT timer set to one-shot, unmasked */

static uint64_t tsc_to_ns(uint64_t t)
{
	return t / tsc_per_ms * 1000000 + (t % tsc_per_ms) * 1000000 / tsc_per_ms;
}

static uint64_t ns_to_tsc(uint64_t ns)
{
	return ns / 1000000 * tsc_per_ms + (ns % 1000000) * tsc_per_ms / 1000000;
}

static void timer_stop(void)
{
	lapic_write(LAPIC_TIMER_INIT, 0);
}

/* One-shot interrupt ns from now (the LAPIC timer counts ns here: divide
 * by 1 of KVM's 1 GHz bus), capped at ~4.3 s: the hook re-arms it when it
 * fires early. */
static void timer_arm_ns(uint64_t ns)
{
	if (ns == 0)
		ns = 1;
	if (ns > 0xffffffffu)
		ns = 0xffffffffu;
	if (!lvt_oneshot) {
		/* once: each LAPIC write is a VM exit */
		lapic_write(LAPIC_LVT_TIMER, IRQ_VECTOR_TIMER);
		lvt_oneshot = 1;
	}
	lapic_write(LAPIC_TIMER_INIT, (uint32_t)ns);
}

/* The same, at TSC value target. */
static void timer_arm_until(uint64_t target)
{
	uint64_t now = cpu_rdtsc();

	timer_arm_ns(target > now ? tsc_to_ns(target - now) : 0);
}

/* One reading of the LAPIC timer's current count, bracketed by the TSC:
 * *width says how long the read took (long: the vCPU was descheduled). */
static uint32_t lapic_count_at(uint64_t *tsc, uint64_t *width)
{
	uint64_t a = cpu_rdtsc();
	uint32_t c = lapic_read(LAPIC_TIMER_CUR);
	uint64_t b = cpu_rdtsc();

	*tsc = a + (b - a) / 2;
	*width = b - a;
	return c;
}

/*
 * TSC ticks per ms against the LAPIC timer (1 GHz) over a few rounds of
 * ~0.5 ms busy waiting. Both are wall clocks, but a vCPU descheduled
 * between a count and its TSC reading skews a round (a loaded host made
 * one read 14 GHz), so each reading is bracketed and the round with the
 * tightest brackets wins.
 */
static void tsc_calibrate(void)
{
	uint64_t best_width = ~0ULL;

	lapic_write(LAPIC_TIMER_DIV, LAPIC_TIMER_DIV_1);
	lapic_write(LAPIC_LVT_TIMER, LAPIC_LVT_MASKED | IRQ_VECTOR_TIMER);
	lapic_write(LAPIC_TIMER_INIT, 0xffffffffu);
	fn_tsc_base = cpu_rdtsc();
	for (int round = 0; round < CALIB_ROUNDS; round++) {
		uint64_t t0, t1, w0, w1;
		uint32_t c0 = lapic_count_at(&t0, &w0), c1;
		do {
			c1 = lapic_count_at(&t1, &w1);
		} while (c0 - c1 < CALIB_COUNTS);
		if (w0 + w1 < best_width && t1 > t0) {
			best_width = w0 + w1;
			tsc_per_ms = (t1 - t0) * 1000000 / (c0 - c1);
		}
	}
	timer_stop();
	if (!tsc_per_ms)
		tsc_per_ms = 1;
	fn_tsc_mult = (1000000ULL << 32) / tsc_per_ms;
}

/* ---- page tables: 4 KiB granularity where it matters ------------------- */

static uint64_t split_tables[4][512] __attribute__((aligned(4096)));
static unsigned nr_split;

/* The first 2 MiB (page 0, the image) in 4 KiB pages, built by the
 * compiler: filling 512 entries at boot costs milliseconds of emulated
 * CPL0 code here. Page 0 is closed to CPL3 from the start. */
#define PT_FLAGS (PTE_P | PTE_RW | PTE_US | PTE_A | PTE_D)
#define PT1(i) ((uint64_t)(i) << 12 | (i ? PT_FLAGS : PT_FLAGS & ~PTE_US))
#define PT8(i) PT1(i), PT1(i + 1), PT1(i + 2), PT1(i + 3), PT1(i + 4), PT1(i + 5), \
	PT1(i + 6), PT1(i + 7)
#define PT64(i) PT8(i), PT8(i + 8), PT8(i + 16), PT8(i + 24), PT8(i + 32), PT8(i + 40), \
	PT8(i + 48), PT8(i + 56)
static uint64_t pt_low[512] __attribute__((aligned(4096))) = {
	PT64(0), PT64(64), PT64(128), PT64(192), PT64(256), PT64(320), PT64(384), PT64(448),
};

static uint64_t *pde_of(uint64_t addr)
{
	uint64_t cr3;

	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	uint64_t *pml4 = (uint64_t *)(uintptr_t)(cr3 & PTE_ADDR);
	uint64_t *pdpt = (uint64_t *)(uintptr_t)(pml4[0] & PTE_ADDR);
	uint64_t *pd = (uint64_t *)(uintptr_t)(pdpt[(addr >> 30) & 3] & PTE_ADDR);
	return &pd[(addr >> 21) & 511];
}

static void tlb_flush(void)
{
	uint64_t cr3;

	__asm__ volatile("mov %%cr3, %0; mov %0, %%cr3" : "=r"(cr3) : : "memory");
}

/* Replaces the 2 MiB page holding addr by 512 4 KiB pages, same rights. */
static int split_2m(uint64_t addr)
{
	uint64_t *pde = pde_of(addr);

	if (!(*pde & PTE_PS))
		return 0;
	if (addr < PAGE_2M && (*pde & 0x1f) == (PT_FLAGS & 0x1f)) {
		*pde = (uint64_t)(uintptr_t)pt_low | PTE_P | PTE_RW | PTE_US | PTE_A;
		tlb_flush();
		return 0;
	}
	if (nr_split >= sizeof(split_tables) / sizeof(split_tables[0]))
		return -ENOMEM;
	uint64_t *pt = split_tables[nr_split++];
	uint64_t base = *pde & PTE_ADDR & ~(PAGE_2M - 1);
	/* bits 0-4 (P, RW, US, PWT, PCD) mean the same in a 4 KiB PTE */
	uint64_t flags = (*pde & 0x1f) | PTE_A | PTE_D;
	for (uint64_t i = 0; i < 512; i++)
		pt[i] = (base + i * PAGE) | flags;
	*pde = (uint64_t)(uintptr_t)pt | PTE_P | PTE_RW | PTE_US | PTE_A;
	tlb_flush();
	return 0;
}

/* Takes the 4 KiB page at addr away from CPL3 (its 2 MiB page split). */
static int page_deny_user(uint64_t addr)
{
	if (split_2m(addr))
		return -ENOMEM;
	uint64_t *pt = (uint64_t *)(uintptr_t)(*pde_of(addr) & PTE_ADDR);
	pt[(addr >> 12) & 511] &= ~PTE_US;
	tlb_flush();
	return 0;
}

/* The image's pages for CPL3: code and constants read-only (CR0.WP is
 * clear, so CPL0 may still write anything), the user side's data
 * (fnlib.c, the function) read-write, and the runtime's data, bss and
 * stacks (page tables, IDT, GDT, TSS, driver state) not at all. The heap
 * above the image (buffers, the handler's stack, the vsock rings) stays
 * user-accessible. */
static int protect_image(void)
{
	extern char __user_data_start[], __user_data_end[], __image_end[];
	uint64_t ustart = (uint64_t)(uintptr_t)__user_data_start;
	uint64_t uend = (uint64_t)(uintptr_t)__user_data_end;
	uint64_t end = ((uint64_t)(uintptr_t)__image_end + PAGE - 1) & ~(PAGE - 1);

	for (uint64_t a = 0x100000; a < end; a += PAGE) {
		if (split_2m(a))
			return -ENOMEM;
		uint64_t *pte = &((uint64_t *)(uintptr_t)(*pde_of(a) & PTE_ADDR))[(a >> 12) & 511];
		if (a < ustart)
			*pte = (*pte | PTE_US) & ~PTE_RW;
		else if (a < uend)
			*pte |= PTE_US | PTE_RW;
		else
			*pte &= ~PTE_US;
	}
	tlb_flush();
	return 0;
}

/* Whether CPL3 may read [p, p + len): the user calls' pointer check. */
static int user_readable(uint64_t p, uint64_t len)
{
	if (p + len < p || p + len > (4ULL << 30))
		return 0;
	for (uint64_t a = p & ~(PAGE - 1); a < p + len; a += PAGE) {
		uint64_t pde = *pde_of(a);
		if ((pde & (PTE_P | PTE_US)) != (PTE_P | PTE_US))
			return 0;
		if (pde & PTE_PS)
			continue;
		uint64_t pte = ((uint64_t *)(uintptr_t)(pde & PTE_ADDR))[(a >> 12) & 511];
		if ((pte & (PTE_P | PTE_US)) != (PTE_P | PTE_US))
			return 0;
	}
	return 1;
}

/* ---- CPL3 supervision: user calls, faults, the deadline ---------------- */

/*
 * While the handler runs, the streams move on: interrupts that hit it
 * (and wake-ups from its sleeps) poll the device, so new connections are
 * answered at once (the monitor gives the guest 10 s), data is queued,
 * TX completes. Safe because the main loop is suspended in user_run(),
 * outside the driver; a stream that closes meanwhile is only marked gone
 * (the main loop checks f->vc after the handler).
 */
static void poll_while_handling(void)
{
	if (vsock_up) {
		vsock_poll();
		vsock_arm_notify();
	}
}

static uint64_t fn_sleep(uint64_t ns)
{
	if (ns > (1ULL << 50)) /* ~13 days: no overflow below */
		ns = 1ULL << 50;
	uint64_t wake = cpu_rdtsc() + ns_to_tsc(ns);

	for (;;) {
		uint64_t now = cpu_rdtsc();
		if (in_handler && now >= deadline_tsc)
			user_resume_kernel(FN_RUN_TIMEOUT);
		if (now >= wake)
			break;
		timer_arm_until(in_handler && deadline_tsc < wake ? deadline_tsc : wake);
		cpu_sti_hlt();
		cpu_cli();
		if (in_handler)
			poll_while_handling();
	}
	if (in_handler)
		timer_arm_until(deadline_tsc);
	else
		timer_stop();
	return 0;
}

static uint64_t fn_log_call(uint64_t p, uint64_t len)
{
	char line[LOG_MAX + 5];
	const char *s = (const char *)(uintptr_t)p;

	if (len > LOG_MAX)
		len = LOG_MAX;
	if (!user_readable(p, len))
		return (uint64_t)-EINVAL;
	memcpy(line, "fn: ", 4);
	for (uint64_t i = 0; i < len; i++)
		line[4 + i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	line[4 + len] = '\n';
	serial_write_bytes(line, 5 + len);
	return 0;
}

static uint64_t fn_call(uint64_t nr, uint64_t a0, uint64_t a1)
{
	switch (nr) {
	case FN_CALL_LOG:
		return fn_log_call(a0, a1);
	case FN_CALL_SLEEP:
		return fn_sleep(a0);
	default:
		return (uint64_t)-EINVAL;
	}
}

static uint64_t fault_hook(const struct exc_frame *f)
{
	fault_vec = f->vector;
	fault_rip = f->rip;
	fault_err = f->error;
	fault_addr = 0;
	if (f->vector == 14)
		__asm__ volatile("mov %%cr2, %0" : "=r"(fault_addr));
	return FN_RUN_FAULT;
}

/* After every interrupt that hit the handler: past the deadline, stop it;
 * otherwise (a device interrupt, or the timer early) re-arm the timer. */
static uint64_t irq_hook(void)
{
	if (!in_handler)
		return 0;
	poll_while_handling();
	if (cpu_rdtsc() >= deadline_tsc)
		return FN_RUN_TIMEOUT;
	timer_arm_until(deadline_tsc);
	return 0;
}

/* ---- messages (error bodies) ------------------------------------------- */

struct msg {
	char *p;
	uint32_t n, cap;
};

static void msg_str(struct msg *m, const char *s)
{
	while (*s && m->n < m->cap)
		m->p[m->n++] = *s++;
}

static void msg_num(struct msg *m, uint64_t v, unsigned base)
{
	char tmp[20];
	int n = 0;

	if (base == 16)
		msg_str(m, "0x");
	do {
		unsigned d = (unsigned)(v % base);
		tmp[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
		v /= base;
	} while (v);
	while (n && m->n < m->cap)
		m->p[m->n++] = tmp[--n];
}

static const char *vector_name(uint64_t v)
{
	static const char *const names[] = {
		"divide error", "debug", "NMI", "breakpoint", "overflow", "bound range",
		"invalid opcode", "device not available", "double fault", "coprocessor",
		"invalid TSS", "segment not present", "stack fault", "general protection fault",
		"page fault", "reserved", "x87 floating point", "alignment check", "machine check",
		"SIMD floating point",
	};
	return v < sizeof(names) / sizeof(names[0]) ? names[v] : "exception";
}

/* ---- streams (vsock app callbacks) -------------------------------------- */

static void inbox_release_all(struct fconn *f)
{
	while (f->qlen) {
		vsock_release(f->vc, f->q[f->qhead], 0);
		f->qhead = (f->qhead + 1) % INBOX;
		f->qlen--;
	}
	f->front_off = 0;
}

static int app_accept(struct vsock_conn *c)
{
	struct fconn *f = NULL;
	uint32_t i = 0;

	while (i < fconn_hi && fconns[i].vc)
		i++;
	if (i == MAX_FCONN)
		return 0;
	f = &fconns[i];
	if (i == fconn_hi)
		fconn_hi++;
	nr_open++;
	/* Field by field: a memset of the inbox costs ~1 us a word at CPL0. */
	f->vc = c;
	f->gen++;
	f->seq = next_seq++;
	f->state = ST_HDR;
	f->qhead = f->qlen = f->front_off = f->unreported = 0;
	f->hdr_have = f->body_have = f->send_off = f->send_len = 0;
	f->close_after_send = 0;
	vsock_set_app_data(c, f);
	vsock_set_buf_alloc(c, cur ? WAIT_CREDIT : REQ_CREDIT, 0);
	if (!cur)
		cur = f;
	return 1;
}

static void app_data(struct vsock_conn *c, uint16_t b, const uint8_t *p, uint32_t len)
{
	struct fconn *f = vsock_app_data(c);

	if (!f || f->state == ST_CLOSING || f->qlen >= INBOX) {
		vsock_release(c, b, len);
		return;
	}
	rx_ptr[b] = p;
	rx_len[b] = len;
	f->q[(f->qhead + f->qlen) % INBOX] = b;
	f->qlen++;
	/* Waiting streams that hold many buffers (bytes in flight when
	 * they lost their turn, or tiny packets) could starve the served
	 * one: the one that asks for more loses its connection instead. */
	if (f != cur) {
		uint32_t held = 0;
		for (uint32_t i = 0; i < fconn_hi; i++)
			if (fconns[i].vc && &fconns[i] != cur)
				held += fconns[i].qlen;
		if (held > WAIT_HOLD_MAX) {
			serial_printf("mote-fn: resetting a waiting stream (%u buffers held)\n", held);
			vsock_reset(c);
		}
	}
}

static void app_closed(struct vsock_conn *c)
{
	struct fconn *f = vsock_app_data(c);

	if (c == ready_conn)
		ready_conn = NULL;
	if (!f)
		return;
	inbox_release_all(f);
	if (f == cur) {
		/* Taken but not yet copied (a body waiting for the response
		 * area): nobody wants those bytes any more. */
		for (uint32_t i = 0; i < nrel; i++)
			vsock_release(NULL, rel_buf[i], 0);
		nrel = 0;
		fn_job.nseg = 0;
		cur = NULL;
	}
	f->vc = NULL;
	nr_open--;
	while (fconn_hi && !fconns[fconn_hi - 1].vc)
		fconn_hi--;
}

static void stream_close(struct fconn *f);

/* The host shut a side of a stream that is not being served and has
 * nothing buffered: it will not send a request, close it now (the
 * served stream is closed by serve() once its buffered requests ran). */
static void app_shutdown(struct vsock_conn *c)
{
	struct fconn *f = vsock_app_data(c);

	if (!f || f == cur || f->qlen || f->state == ST_CLOSING)
		return;
	if ((vsock_peer_shut(c) & VSOCK_SHUT_RCV) || vsock_all_acked(c))
		vsock_reset(c);
	else
		stream_close(f);
}

static const struct vsock_app app = {
	.accept = app_accept,
	.data = app_data,
	.shutdown = app_shutdown,
	.closed = app_closed,
};

/* ---- serving ------------------------------------------------------------ */

/* Passes the turn to the oldest other stream (that has sent something,
 * if with_data); 1 if it did. */
static int pick_next(int with_data)
{
	struct fconn *best = NULL;

	if (nr_open <= (cur ? 1u : 0u))
		return 0; /* no other stream */
	for (uint32_t i = 0; i < fconn_hi; i++) {
		struct fconn *f = &fconns[i];
		if (f->vc && f != cur && f->state != ST_CLOSING && (!with_data || f->qlen) &&
		    (!best || f->seq - best->seq > (1u << 31)))
			best = f;
	}
	if (!best)
		return 0;
	if (cur && cur->state != ST_CLOSING)
		vsock_set_buf_alloc(cur->vc, WAIT_CREDIT, 1);
	cur = best;
	vsock_set_buf_alloc(cur->vc, REQ_CREDIT, 1);
	return 1;
}

/* Takes up to want bytes from the front of f's inbox (one buffer at
 * most); a buffer whose bytes are all taken goes to the release list. */
static const uint8_t *inbox_take(struct fconn *f, uint32_t want, uint32_t *n)
{
	uint16_t b = f->q[f->qhead];
	uint32_t left = rx_len[b] - f->front_off;
	const uint8_t *p = rx_ptr[b] + f->front_off;

	if (want > left)
		want = left;
	f->front_off += want;
	if (f->front_off == rx_len[b]) {
		rel_buf[nrel] = b;
		rel_len[nrel++] = rx_len[b];
		f->qhead = (f->qhead + 1) % INBOX;
		f->qlen--;
		f->front_off = 0;
	}
	*n = want;
	return p;
}

/* Gives back the buffers whose bytes are taken (and copied). */
static void release_taken(struct fconn *f)
{
	for (uint32_t i = 0; i < nrel; i++) {
		vsock_release(f->vc, rel_buf[i], rel_len[i]);
		f->unreported += rel_len[i];
	}
	nrel = 0;
	if (f->unreported >= REQ_CREDIT / 4) {
		vsock_credit_update(f->vc);
		f->unreported = 0;
	}
}

static uint64_t run_user(uint32_t op, int deadline_ms)
{
	fn_job.op = op;
	in_handler = 1;
	deadline_tsc = cpu_rdtsc() + (uint64_t)deadline_ms * tsc_per_ms;
	/* The LAPIC timer counts ns: no TSC conversion (two divisions, ~25
	 * emulated instructions) for the common case. */
	timer_arm_ns((uint64_t)deadline_ms * 1000000);
	if (vsock_up)
		vsock_arm_notify();
	user_set_interrupts(1);
	uint64_t r = user_run(fn_user_entry, (uint64_t)(uintptr_t)&fn_job, user_stack_top);
	user_set_interrupts(0);
	timer_stop();
	in_handler = 0;
	fn_job.nseg = 0;
	return r;
}

/* Copies the pending segments at CPL3, then frees their buffers.
 * Returns 0 if the stream went away meanwhile (streams move on while
 * CPL3 code runs, poll_while_handling). */
static int flush_copies(struct fconn *f)
{
	uint32_t gen = f->gen;

	if (fn_job.nseg)
		run_user(FN_JOB_COPY, (int)default_deadline_ms);
	if (!f->vc || f->gen != gen)
		return 0;
	release_taken(f);
	return 1;
}

/* A response the runtime writes itself: status and a text body. */
static void respond_text(struct fconn *f, uint32_t status, struct msg *m, uint64_t handler_us)
{
	struct fn_response_hdr *h = (struct fn_response_hdr *)resp_area;

	h->magic = FN_RESP_MAGIC;
	h->status = status;
	h->body_len = m ? m->n : 0;
	h->handler_us = (uint32_t)(handler_us > 0xffffffffu ? 0xffffffffu : handler_us);
	f->send_off = 0;
	f->send_len = RESP_HDR + h->body_len;
	f->state = ST_SEND;
}

static void msg_init(struct msg *m)
{
	m->p = (char *)resp_area + RESP_HDR;
	m->n = 0;
	m->cap = 512;
}

/* The body has arrived (its last segments still pending): run it. */
static void run_request(struct fconn *f)
{
	struct fn_response_hdr *h = (struct fn_response_hdr *)resp_area;
	uint32_t deadline_ms = f->hdr.deadline_ms ? f->hdr.deadline_ms : default_deadline_ms;
	struct msg m;

	fn_job.req = req_area;
	fn_job.req_len = f->hdr.body_len;
	fn_job.resp = resp_area + RESP_HDR;
	fn_job.resp_cap = FN_MAX_RESPONSE;
	memcpy(fn_job.seed, f->hdr.seed, sizeof(fn_job.seed));
	requests++;
	uint32_t gen = f->gen;
	uint64_t t0 = cpu_rdtsc();
	uint64_t r = run_user(FN_JOB_CALL, (int)deadline_ms);
	uint64_t us = (cpu_rdtsc() - t0) * 1000 / tsc_per_ms;
	if (!f->vc || f->gen != gen)
		return; /* the stream went away meanwhile: nobody to answer */
	release_taken(f);

	msg_init(&m);
	if (r == FN_RUN_DONE) {
		uint32_t len = fn_job.resp_len;
		if (len > FN_MAX_RESPONSE) {
			msg_str(&m, "response of ");
			msg_num(&m, len, 10);
			msg_str(&m, " bytes is over the limit of ");
			msg_num(&m, FN_MAX_RESPONSE, 10);
			respond_text(f, FN_TOO_LARGE, &m, us);
			return;
		}
		h->magic = FN_RESP_MAGIC;
		h->status = fn_job.ret ? FN_HANDLER_ERROR : FN_OK;
		h->body_len = len;
		h->handler_us = (uint32_t)(us > 0xffffffffu ? 0xffffffffu : us);
		f->send_off = 0;
		f->send_len = RESP_HDR + len;
		f->state = ST_SEND;
		return;
	}
	if (r == FN_RUN_TIMEOUT) {
		timeouts++;
		msg_str(&m, "handler stopped at its deadline of ");
		msg_num(&m, deadline_ms, 10);
		msg_str(&m, " ms");
		serial_printf("mote-fn: request %lu: timeout after %u ms\n", (unsigned long)requests,
			      deadline_ms);
		respond_text(f, FN_TIMEOUT, &m, us);
		return;
	}
	faults++;
	if (r == FN_RUN_FAULT) {
		msg_str(&m, vector_name(fault_vec));
		msg_str(&m, " (vector ");
		msg_num(&m, fault_vec, 10);
		msg_str(&m, ") at rip=");
		msg_num(&m, fault_rip, 16);
		if (fault_vec == 14) {
			msg_str(&m, " address=");
			msg_num(&m, fault_addr, 16);
		}
		msg_str(&m, " error=");
		msg_num(&m, fault_err, 16);
	} else {
		msg_str(&m, "handler left through a stray exit call");
	}
	serial_printf("mote-fn: request %lu: fault: ", (unsigned long)requests);
	serial_write_bytes(m.p, m.n);
	serial_write_bytes("\n", 1);
	respond_text(f, FN_FAULT, &m, us);
}

/* The header is complete: a request to run, or an answer and the end of
 * the stream (the byte stream cannot be trusted past a bad header). */
static void header_done(struct fconn *f)
{
	struct msg m;

	msg_init(&m);
	if (f->hdr.magic != FN_REQ_MAGIC || f->hdr.flags != 0) {
		msg_str(&m, f->hdr.magic != FN_REQ_MAGIC ? "bad request magic " : "unknown flags ");
		msg_num(&m, f->hdr.magic != FN_REQ_MAGIC ? f->hdr.magic : f->hdr.flags, 16);
		f->close_after_send = 1;
		respond_text(f, FN_BAD_REQUEST, &m, 0);
		return;
	}
	if (f->hdr.body_len > FN_MAX_REQUEST) {
		msg_str(&m, "request body of ");
		msg_num(&m, f->hdr.body_len, 10);
		msg_str(&m, " bytes is over the limit of ");
		msg_num(&m, FN_MAX_REQUEST, 10);
		f->close_after_send = 1;
		respond_text(f, FN_TOO_LARGE, &m, 0);
		return;
	}
	f->body_have = 0;
	f->state = ST_BODY;
}

static void stream_close(struct fconn *f)
{
	vsock_shutdown(f->vc);
	f->state = ST_CLOSING;
	inbox_release_all(f);
	if (f == cur)
		cur = NULL;
}

/* Whether serve() would find nothing to do, without its prologue (every
 * wake-up ends with such a call): no stream, or the only one between
 * requests with nothing received, nothing to give back, not shut. */
static inline int serve_idle(void)
{
	if (!cur)
		return !nr_open;
	return nr_open == 1 && cur->state == ST_HDR && !cur->qlen && !cur->hdr_have && !nrel &&
	       !vsock_peer_shut(cur->vc);
}

/* One round of work on the served stream; 1 if anything happened. */
static int serve(void)
{
	struct fconn *f;
	int progress = 0;

	if (!cur)
		progress = pick_next(0);
	else if (cur->state == ST_HDR && !cur->hdr_have && !cur->qlen)
		progress = pick_next(1); /* cur is between requests */
	f = cur;
	if (!f)
		return progress;
	switch (f->state) {
	case ST_HDR:
		while (f->qlen && f->hdr_have < REQ_HDR) {
			uint32_t n;
			const uint8_t *p = inbox_take(f, REQ_HDR - f->hdr_have, &n);
			memcpy((uint8_t *)&f->hdr + f->hdr_have, p, n);
			f->hdr_have += n;
			progress = 1;
		}
		if (nrel)
			release_taken(f);
		if (f->hdr_have == REQ_HDR) {
			f->hdr_have = 0;
			header_done(f);
			return 1;
		}
		break;
	case ST_BODY:
		while (f->qlen && f->body_have < f->hdr.body_len) {
			uint32_t n;
			const uint8_t *p = inbox_take(f, f->hdr.body_len - f->body_have, &n);
			fn_job.seg[fn_job.nseg].src = p;
			fn_job.seg[fn_job.nseg].dst = req_area + f->body_have;
			fn_job.seg[fn_job.nseg].len = n;
			fn_job.nseg++;
			f->body_have += n;
			progress = 1;
			if (fn_job.nseg == FN_SEG_MAX && !flush_copies(f))
				return 1;
		}
		if (f->body_have == f->hdr.body_len) {
			/* The response area is free once the last one is out. */
			/* (TX completions interrupt a wait only while we
			 * wait for them.) */
			if (vsock_tx_inflight()) {
				vsock_want_tx_done(1);
				return progress;
			}
			vsock_want_tx_done(0);
			run_request(f);
			return 1;
		}
		if (!flush_copies(f))
			return 1;
		break;
	case ST_SEND: {
		uint32_t n = vsock_send(f->vc, resp_area + f->send_off, f->send_len - f->send_off);
		f->send_off += n;
		if (n) {
			progress = 1;
			f->unreported = 0; /* every packet tells fwd_cnt */
		}
		if (f->send_off < f->send_len)
			return progress;
		if (f->close_after_send) {
			stream_close(f);
			return 1;
		}
		f->state = ST_HDR;
		return 1;
	}
	case ST_CLOSING:
		break;
	}
	/* Nothing more will come: the host shut its sending side (mid-request
	 * or not). A host that cannot receive gets a reset. */
	if (cur == f && !f->qlen && f->state != ST_SEND) {
		uint32_t shut = vsock_peer_shut(f->vc);
		if (shut & VSOCK_SHUT_RCV) {
			vsock_reset(f->vc);
			return 1;
		}
		/* The host will send nothing more. If it has also taken
		 * every byte we sent (its last packet says so), nothing can
		 * be lost: a reset ends the stream at once (the spec allows
		 * it), sparing the wake-up for the RST the host would answer
		 * a SHUTDOWN with (~250 emulated instructions and an
		 * interrupt here). Else the orderly SHUTDOWN. */
		if ((shut & VSOCK_SHUT_SEND) && vsock_all_acked(f->vc)) {
			vsock_reset(f->vc);
			return 1;
		}
		if (shut & VSOCK_SHUT_SEND) {
			stream_close(f);
			return 1;
		}
	}
	return progress;
}

/* The ready signal: FN_READY_LINE to host port FN_READY_PORT, once. */
static int ready_step(void)
{
	static const char line[] = FN_READY_LINE;
	const uint32_t len = sizeof(line) - 1;

	if (!ready_conn || !vsock_established(ready_conn) || ready_off == len)
		return 0;
	uint32_t n = vsock_send(ready_conn, line + ready_off, len - ready_off);
	ready_off += n;
	if (ready_off == len)
		vsock_shutdown(ready_conn);
	return n != 0;
}

/* ---- boot ---------------------------------------------------------------- */

static void *alloc_user(size_t size)
{
	uint8_t *p = dma_alloc(size, 4096);

	if (!p || user_map((uint64_t)(uintptr_t)p, size)) {
		serial_printf("mote-fn: out of memory\n");
		guest_exit(GUEST_EXIT_FAIL);
	}
	return p;
}

int main(uint32_t start_info_paddr)
{
	const struct hvm_start_info *si = (const void *)(uintptr_t)start_info_paddr;

	mmio_write8(BOOT_TIMER_MMIO, BOOT_TIMER_VALUE);
	idt_install();
	if (!si || si->magic != HVM_START_MAGIC) {
		serial_printf("mote-fn: bad hvm_start_info at 0x%x\n", start_info_paddr);
		guest_exit(GUEST_EXIT_BAD_CMDLINE);
	}
	if (si->cmdline_paddr)
		guest_cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
	default_deadline_ms = (uint32_t)cmdline_u64("fn_deadline_ms=", DEFAULT_DEADLINE_MS);
	if (!default_deadline_ms)
		default_deadline_ms = DEFAULT_DEADLINE_MS;

	user_init();
	user_set_call_handler(fn_call);
	user_set_fault_handler(fault_hook);
	user_set_irq_hook(irq_hook);
	irq_init();
	tsc_calibrate();

	/* The stack's lowest page is a guard: an overflow faults there.
	 * First, so the guard is in the image's (split) 2 MiB page. */
	uint8_t *stack = alloc_user(USER_STACK_SIZE + PAGE);
	user_stack_top = stack + PAGE + USER_STACK_SIZE;
	/* The response area is followed by a guard page too: a handler that
	 * writes past resp_cap faults instead of hitting the vsock rings. */
	uint64_t resp_size = (RESP_HDR + FN_MAX_RESPONSE + 512 + PAGE - 1) & ~(PAGE - 1);
	resp_area = alloc_user(resp_size + PAGE);
	req_area = alloc_user(FN_MAX_REQUEST);
	if (page_deny_user(0) || page_deny_user((uint64_t)(uintptr_t)stack) ||
	    page_deny_user((uint64_t)(uintptr_t)resp_area + resp_size) || protect_image()) {
		serial_printf("mote-fn: cannot set up the page tables\n");
		guest_exit(GUEST_EXIT_FAIL);
	}

	if (fn_init) {
		uint64_t r = run_user(FN_JOB_INIT, (int)default_deadline_ms);
		if (r != FN_RUN_DONE) {
			serial_printf("mote-fn: fn_init %s (vector %lu at rip=0x%lx)\n",
				      r == FN_RUN_TIMEOUT ? "ran past its deadline" : "faulted",
				      (unsigned long)fault_vec, (unsigned long)fault_rip);
			guest_exit(GUEST_EXIT_FAIL);
		}
	}

	int ret = vsock_app_open(&app, FN_VSOCK_PORT);
	vsock_up = !ret;
	timer_stop(); /* irq_init's periodic tick: an idle function costs nothing */
	/* One-shot from now on, set before the snapshot: a clone's first
	 * handler then arms the timer with one LAPIC write, not two. */
	lapic_write(LAPIC_LVT_TIMER, IRQ_VECTOR_TIMER);
	lvt_oneshot = 1;
	/* The CPL3 copy reads the RX buffers where the device put them. */
	extern char __image_end[];
	uint64_t heap_start = (uint64_t)(uintptr_t)__image_end;
	uint64_t heap_now = (uint64_t)(uintptr_t)dma_alloc(0, PAGE);
	if (!ret && heap_now > heap_start)
		user_map(heap_start, heap_now - heap_start);
	serial_printf("mote-fn: tsc %lu kHz, deadline %u ms, limits %u/%u bytes, port %u\n",
		      (unsigned long)tsc_per_ms, default_deadline_ms, FN_MAX_REQUEST,
		      FN_MAX_RESPONSE, FN_VSOCK_PORT);
	serial_write_bytes(FN_READY_LINE, sizeof(FN_READY_LINE) - 1);
	if (ret) {
		serial_printf("mote-fn: no virtio-vsock device: cannot serve requests\n");
		for (;;)
			__asm__ volatile("cli; hlt");
	}
	ready_conn = vsock_connect(FN_READY_PORT);

	/* A restore resets every stream (the vsock driver says so on the
	 * console, briefly: each byte costs every clone start a port write);
	 * the listener stays, nothing else to do.
	 * One poll, then serve() until it has nothing left to do, then sleep:
	 * no second poll round just to find nothing new (every instruction
	 * here is emulated, ~1-3 us). vsock_wait() kicks what serve() queued
	 * and does not sleep if a queue has news meanwhile. */
	for (;;) {
		int rounds = 0;

		vsock_poll();
		while (!serve_idle() && serve() && ++rounds < 16)
			;
		if (ready_step() || rounds == 16)
			continue;
		vsock_wait();
	}
}
