/* CPU demand estimation from a vCPU thread's scheduler counters, after
 * Isci et al., "Runtime Demand Estimation for Effective Dynamic Resource
 * Management" (NOMS 2010).
 *
 * Over an interval (Period) a vCPU thread is
 *   Used   running on a host CPU (schedstat field 1),
 *   Ready  runnable but waiting for a host CPU (schedstat field 2),
 *   Wait   neither: the guest halted and the thread sleeps in KVM_RUN,
 *          Wait = Period - Used - Ready.
 * usage  = Used / Period            what the vCPU got,
 * demand = Used / (Period - Ready)  what it would have used with a CPU of
 *                                   its own: = Used / (Used + Wait),
 * ready  = Ready / Period           a steal-like contention ratio.
 *
 * Pure code: counters in, ratios out. No I/O, so it is unit-tested on
 * synthetic traces (tests/unit/test_demand.c). */
#ifndef MOTE_METRICS_DEMAND_H
#define MOTE_METRICS_DEMAND_H

#include <stdbool.h>
#include <stdint.h>

#define DEMAND_WINDOW_MAX 64

/* Cumulative counters read at one instant, nanoseconds. */
struct demand_counters {
	uint64_t t_ns;     /* CLOCK_MONOTONIC when read */
	uint64_t run_ns;   /* schedstat: time on a CPU */
	uint64_t ready_ns; /* schedstat: time on a run queue, waiting */
	uint64_t poll_ns;  /* KVM halt polling inside KVM_RUN (counted in run_ns) */
};

/* One interval's decomposition; used + ready + wait == period. */
struct demand_interval {
	uint64_t period_ns;
	uint64_t used_ns;
	uint64_t ready_ns;
	uint64_t wait_ns;
};

/* The three ratios of an interval (or a sum of intervals), 0..1 each. */
struct demand_ratios {
	double usage;
	double demand;
	double ready;
};

/* Exponentially weighted moving averages of the ratios. */
struct demand_ewma {
	double alpha;      /* weight of the newest interval, (0, 1] */
	bool primed;       /* false until the first interval */
	struct demand_ratios avg;
};

/* The last n intervals (n <= DEMAND_WINDOW_MAX), oldest overwritten. */
struct demand_window {
	unsigned cap;
	unsigned len;
	unsigned head;     /* next slot to write */
	struct demand_interval iv[DEMAND_WINDOW_MAX];
};

/* One vCPU's estimator state. */
struct demand_vcpu {
	bool have_prev;
	struct demand_counters prev;
	/* The raw readings of the window (window + 1 of them), oldest first
	 * at hist_head - hist_len: the window is computed from the counters
	 * themselves, not by summing clamped intervals. Ready time a thread
	 * is still waiting at a reading is only counted once it runs, so an
	 * interval can see Ready that belongs to the one before; clamping
	 * each interval would turn that into Wait and bias demand low under
	 * heavy contention. */
	struct demand_counters hist[DEMAND_WINDOW_MAX + 1];
	unsigned hist_head, hist_len;
	struct demand_interval last;
	struct demand_window window;
	struct demand_ewma ewma;        /* avg: ratios of the smoothed components */
	struct demand_counters ewma_prev;
	double ew_period, ew_used, ew_ready;
	uint64_t nr_intervals;
	uint64_t nr_resets;  /* counters that went backwards: baseline taken again */
};

/* Decomposes cur - prev into an interval. Halt-poll time (poll_ns) moves
 * from Used to Wait: polling is the vCPU waiting, spent on a CPU. Small
 * inconsistencies between the clock and the counters (they are not read
 * atomically) are clamped so that used + ready <= period. Returns 0,
 * -EAGAIN for an empty interval (no time passed), or -ERANGE when a
 * counter went backwards (wrapped, or a new thread): no interval then. */
int demand_interval_between(const struct demand_counters *prev, const struct demand_counters *cur,
			    struct demand_interval *out);

/* Ratios of an interval. period 0: all zero. A vCPU that was runnable
 * the whole time and never ran (used + wait == 0, ready > 0) wanted the
 * CPU all along: demand 1. */
struct demand_ratios demand_ratios_of(const struct demand_interval *iv);

/* Adds b into a (sums of intervals keep the identity). */
void demand_interval_add(struct demand_interval *a, const struct demand_interval *b);

void demand_window_init(struct demand_window *w, unsigned cap);
void demand_window_push(struct demand_window *w, const struct demand_interval *iv);
/* Sum of the intervals in the window (zero if empty). */
struct demand_interval demand_window_sum(const struct demand_window *w);

/* A VM's figures from its vCPUs': each ratio summed, in CPUs (a 2-vCPU
 * VM that needs both fully has demand 2.0). */
struct demand_ratios demand_ratios_sum(const struct demand_ratios *per_vcpu, unsigned n);

void demand_ewma_init(struct demand_ewma *e, double alpha);
void demand_ewma_push(struct demand_ewma *e, const struct demand_ratios *r);

/* The moving window from the oldest to the newest reading in it (all
 * zero before two readings). */
struct demand_interval demand_vcpu_window(const struct demand_vcpu *v);

/* window: intervals in the moving window (1..DEMAND_WINDOW_MAX);
 * alpha: EWMA weight of the newest interval. */
void demand_vcpu_init(struct demand_vcpu *v, unsigned window, double alpha);
/* Feeds one reading. Returns 0 when an interval was added, -EAGAIN for
 * the first reading (baseline) or an empty interval, -ERANGE when the
 * counters went backwards (the baseline is taken again). */
int demand_vcpu_update(struct demand_vcpu *v, const struct demand_counters *cur);

#endif
