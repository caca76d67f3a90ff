/* The demand estimator (metrics/demand.c) on synthetic schedstat traces:
 * the decomposition Period = Used + Ready + Wait, the three ratios, the
 * moving window and the EWMA, their edge cases (zero period, counters
 * going backwards, a vCPU that never ran, halt polling), and the paper's
 * table: 10 VMs of one vCPU on 2 CPUs, each cycling 4 quanta of work and
 * 1 quantum of sleep, use ~20 % each but demand ~80 %. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "metrics/demand.h"

#define MS 1000000ULL

static struct demand_counters ctr(uint64_t t, uint64_t run, uint64_t ready)
{
	return (struct demand_counters){ .t_ns = t, .run_ns = run, .ready_ns = ready };
}

static void assert_near(double got, double want, double tol)
{
	if (fabs(got - want) > tol)
		fail_msg("got %.4f, expected %.4f +- %.4f", got, want, tol);
}

static void test_interval_decomposes_period(void **state)
{
	(void)state;
	struct demand_counters a = ctr(1000 * MS, 50 * MS, 10 * MS);
	struct demand_counters b = ctr(2000 * MS, 450 * MS, 310 * MS);
	struct demand_interval iv;

	assert_int_equal(demand_interval_between(&a, &b, &iv), 0);
	assert_int_equal(iv.period_ns, 1000 * MS);
	assert_int_equal(iv.used_ns, 400 * MS);
	assert_int_equal(iv.ready_ns, 300 * MS);
	assert_int_equal(iv.wait_ns, 300 * MS);
	struct demand_ratios r = demand_ratios_of(&iv);
	assert_near(r.usage, 0.4, 1e-9);
	assert_near(r.ready, 0.3, 1e-9);
	/* Used / (Period - Ready) = 400 / 700 = Used / (Used + Wait). */
	assert_near(r.demand, 400.0 / 700.0, 1e-9);
}

static void test_zero_period_is_no_interval(void **state)
{
	(void)state;
	struct demand_counters a = ctr(5 * MS, 1 * MS, 0);
	struct demand_interval iv;

	assert_int_equal(demand_interval_between(&a, &a, &iv), -EAGAIN);
	struct demand_interval zero = { 0 };
	struct demand_ratios r = demand_ratios_of(&zero);
	assert_true(r.usage == 0 && r.demand == 0 && r.ready == 0);
}

static void test_counters_backwards_reset(void **state)
{
	(void)state;
	struct demand_vcpu v;

	demand_vcpu_init(&v, 4, 0.5);
	struct demand_counters c0 = ctr(0, UINT64_MAX - 5 * MS, 0);
	assert_int_equal(demand_vcpu_update(&v, &c0), -EAGAIN);
	/* The run counter wrapped (or the thread was replaced): no interval,
	 * a new baseline, and the next interval is computed from it. */
	struct demand_counters c1 = ctr(100 * MS, 10 * MS, 0);
	assert_int_equal(demand_vcpu_update(&v, &c1), -ERANGE);
	assert_int_equal(v.nr_resets, 1);
	assert_int_equal(v.nr_intervals, 0);
	struct demand_counters c2 = ctr(200 * MS, 60 * MS, 0);
	assert_int_equal(demand_vcpu_update(&v, &c2), 0);
	assert_int_equal(v.last.used_ns, 50 * MS);
	assert_int_equal(v.last.period_ns, 100 * MS);
	/* The clock going backwards is a reset too. */
	struct demand_counters c3 = ctr(150 * MS, 70 * MS, 0);
	assert_int_equal(demand_vcpu_update(&v, &c3), -ERANGE);
	assert_int_equal(v.nr_resets, 2);
}

static void test_vcpu_that_never_ran(void **state)
{
	(void)state;
	struct demand_vcpu v;
	struct demand_counters c = ctr(0, 0, 0);

	demand_vcpu_init(&v, 8, 0.3);
	assert_int_equal(demand_vcpu_update(&v, &c), -EAGAIN);
	/* Idle the whole time: all Wait, demand 0. */
	c.t_ns = 1000 * MS;
	assert_int_equal(demand_vcpu_update(&v, &c), 0);
	struct demand_ratios r = demand_ratios_of(&v.last);
	assert_int_equal(v.last.wait_ns, 1000 * MS);
	assert_true(r.demand == 0 && r.usage == 0 && r.ready == 0);
	/* Runnable the whole time but never given a CPU: it wanted it all. */
	c.t_ns = 2000 * MS;
	c.ready_ns = 1000 * MS;
	assert_int_equal(demand_vcpu_update(&v, &c), 0);
	r = demand_ratios_of(&v.last);
	assert_near(r.demand, 1.0, 1e-12);
	assert_near(r.ready, 1.0, 1e-12);
	assert_near(r.usage, 0.0, 1e-12);
}

static void test_clamps_inconsistent_reads(void **state)
{
	(void)state;
	/* Counters read a little after the clock: used + ready > period. */
	struct demand_counters a = ctr(0, 0, 0), b = ctr(100 * MS, 90 * MS, 30 * MS);
	struct demand_interval iv;

	assert_int_equal(demand_interval_between(&a, &b, &iv), 0);
	assert_int_equal(iv.used_ns, 90 * MS);
	assert_int_equal(iv.ready_ns, 10 * MS);
	assert_int_equal(iv.wait_ns, 0);
	b = ctr(100 * MS, 120 * MS, 0);
	assert_int_equal(demand_interval_between(&a, &b, &iv), 0);
	assert_int_equal(iv.used_ns, 100 * MS);
	assert_int_equal(iv.used_ns + iv.ready_ns + iv.wait_ns, iv.period_ns);
}

static void test_halt_polling_counts_as_wait(void **state)
{
	(void)state;
	struct demand_counters a = ctr(0, 0, 0), b = ctr(100 * MS, 60 * MS, 0);
	struct demand_interval iv;

	b.poll_ns = 20 * MS; /* 20 of the 60 ms "run" were halt polling */
	assert_int_equal(demand_interval_between(&a, &b, &iv), 0);
	assert_int_equal(iv.used_ns, 40 * MS);
	assert_int_equal(iv.wait_ns, 60 * MS);
	b.poll_ns = 90 * MS; /* more polling than run: used 0, never negative */
	assert_int_equal(demand_interval_between(&a, &b, &iv), 0);
	assert_int_equal(iv.used_ns, 0);
}

static void test_window_slides(void **state)
{
	(void)state;
	struct demand_window w;
	struct demand_interval iv = { .period_ns = 10, .used_ns = 1, .ready_ns = 2, .wait_ns = 7 };

	demand_window_init(&w, 3);
	struct demand_interval s = demand_window_sum(&w);
	assert_int_equal(s.period_ns, 0);
	for (int i = 0; i < 5; i++) {
		iv.used_ns = (uint64_t)i + 1;
		iv.wait_ns = 10 - 2 - iv.used_ns;
		demand_window_push(&w, &iv);
	}
	s = demand_window_sum(&w);
	assert_int_equal(w.len, 3);
	assert_int_equal(s.period_ns, 30);
	assert_int_equal(s.used_ns, 3 + 4 + 5); /* the oldest two fell out */
	assert_int_equal(s.used_ns + s.ready_ns + s.wait_ns, s.period_ns);
	/* Bounds: 0 becomes 1, too large becomes the maximum. */
	demand_window_init(&w, 0);
	assert_int_equal(w.cap, 1);
	demand_window_init(&w, 100000);
	assert_int_equal(w.cap, DEMAND_WINDOW_MAX);
}

static void test_window_weights_by_length(void **state)
{
	(void)state;
	struct demand_window w;
	/* A 100 ms interval fully used and a 900 ms one idle: 10 %, not 50 %. */
	struct demand_interval a = { .period_ns = 100, .used_ns = 100 };
	struct demand_interval b = { .period_ns = 900, .wait_ns = 900 };

	demand_window_init(&w, 4);
	demand_window_push(&w, &a);
	demand_window_push(&w, &b);
	struct demand_interval s = demand_window_sum(&w);
	struct demand_ratios r = demand_ratios_of(&s);
	assert_near(r.usage, 0.1, 1e-12);
	assert_near(r.demand, 0.1, 1e-12);
}

/* Ready time still pending at a reading is counted in the next interval.
 * Clamping that interval must not turn it into Wait in the window. */
static void test_window_from_raw_counters(void **state)
{
	(void)state;
	struct demand_vcpu v;
	struct demand_counters c = ctr(0, 0, 0);

	demand_vcpu_init(&v, 4, 0.5);
	demand_vcpu_update(&v, &c);
	/* True: 10 used, 80 ready, 10 wait per 100; at the first reading 30
	 * of the ready time is still pending (shows as wait). */
	c = ctr(100 * MS, 10 * MS, 50 * MS);
	assert_int_equal(demand_vcpu_update(&v, &c), 0);
	assert_int_equal(v.last.wait_ns, 40 * MS);
	c = ctr(200 * MS, 20 * MS, 160 * MS); /* 110 counted: clamped to 90 */
	assert_int_equal(demand_vcpu_update(&v, &c), 0);
	assert_int_equal(v.last.ready_ns, 90 * MS);
	assert_int_equal(v.last.wait_ns, 0);
	struct demand_interval w = demand_vcpu_window(&v);
	assert_int_equal(w.period_ns, 200 * MS);
	assert_int_equal(w.used_ns, 20 * MS);
	assert_int_equal(w.wait_ns, 20 * MS);
	assert_near(demand_ratios_of(&w).demand, 0.5, 1e-12);
	/* So does the EWMA, which smooths the raw deltas: ready (50 + 110) / 2. */
	assert_near(v.ewma.avg.demand, 0.5, 1e-9);
	assert_near(v.ewma.avg.ready, 0.8, 1e-9);
	/* Summing the clamped intervals would have said 20 / 60. */
	struct demand_interval sum = demand_window_sum(&v.window);
	assert_near(demand_ratios_of(&sum).demand, 20.0 / 60.0, 1e-12);
	/* The window slides: after 4 more intervals only they count. */
	for (int i = 3; i <= 6; i++) {
		c = ctr((uint64_t)i * 100 * MS, c.run_ns + 50 * MS, c.ready_ns);
		assert_int_equal(demand_vcpu_update(&v, &c), 0);
	}
	w = demand_vcpu_window(&v);
	assert_int_equal(w.period_ns, 400 * MS);
	assert_int_equal(w.used_ns, 200 * MS);
	/* A reset restarts it. */
	c = ctr(700 * MS, 0, 0);
	assert_int_equal(demand_vcpu_update(&v, &c), -ERANGE);
	assert_int_equal(demand_vcpu_window(&v).period_ns, 0);
	c = ctr(800 * MS, 30 * MS, 0);
	assert_int_equal(demand_vcpu_update(&v, &c), 0);
	assert_int_equal(demand_vcpu_window(&v).used_ns, 30 * MS);
}

static void test_ewma(void **state)
{
	(void)state;
	struct demand_ewma e;
	struct demand_ratios one = { .usage = 1, .demand = 1, .ready = 0 };
	struct demand_ratios zero = { 0 };

	demand_ewma_init(&e, 0.5);
	assert_false(e.primed);
	demand_ewma_push(&e, &one); /* the first sample primes it */
	assert_near(e.avg.demand, 1.0, 1e-12);
	demand_ewma_push(&e, &zero);
	assert_near(e.avg.demand, 0.5, 1e-12);
	demand_ewma_push(&e, &zero);
	assert_near(e.avg.demand, 0.25, 1e-12);
	/* Out-of-range alpha falls back to 1 (no smoothing). */
	demand_ewma_init(&e, 0.0);
	assert_near(e.alpha, 1.0, 0);
	demand_ewma_init(&e, 7.0);
	assert_near(e.alpha, 1.0, 0);
	demand_ewma_init(&e, NAN);
	assert_near(e.alpha, 1.0, 0);
}

static void test_vm_sum(void **state)
{
	(void)state;
	struct demand_ratios v[2] = { { 0.5, 0.9, 0.1 }, { 0.25, 0.5, 0.2 } };
	struct demand_ratios s = demand_ratios_sum(v, 2);

	assert_near(s.usage, 0.75, 1e-12);
	assert_near(s.demand, 1.4, 1e-12);
	assert_near(s.ready, 0.3, 1e-12);
	s = demand_ratios_sum(v, 0);
	assert_true(s.demand == 0);
}

/* ---- the paper's table --------------------------------------------------------
 * A quantum-level simulation of a host with NCPU CPUs and round-robin
 * scheduling: each VM works WORK quanta, sleeps SLEEP quanta, repeats. A
 * VM that wants a CPU but does not get one is Ready for that quantum. */
#define QUANTUM (1 * MS)

struct sim_vm {
	unsigned work_left, sleep_left;
	uint64_t run_ns, ready_ns;
	uint64_t last_ran;
};

static void simulate(struct sim_vm *vms, unsigned nvm, unsigned ncpu, unsigned work,
		     unsigned sleep, uint64_t step)
{
	bool want[64];
	unsigned picked = 0;

	for (unsigned i = 0; i < nvm; i++)
		want[i] = vms[i].work_left > 0;
	/* Run the ncpu runnable VMs that waited longest. */
	bool run[64] = { false };
	while (picked < ncpu) {
		int best = -1;
		for (unsigned i = 0; i < nvm; i++)
			if (want[i] && !run[i] && (best < 0 || vms[i].last_ran < vms[best].last_ran))
				best = (int)i;
		if (best < 0)
			break;
		run[best] = true;
		picked++;
	}
	for (unsigned i = 0; i < nvm; i++) {
		struct sim_vm *v = &vms[i];
		if (run[i]) {
			v->run_ns += QUANTUM;
			v->last_ran = step + 1;
			if (--v->work_left == 0)
				v->sleep_left = sleep;
		} else if (want[i]) {
			v->ready_ns += QUANTUM;
		} else if (v->sleep_left && --v->sleep_left == 0) {
			v->work_left = work;
		}
	}
}

static void run_table(unsigned nvm, unsigned ncpu, double want_usage, double want_demand,
		      double tol)
{
	struct sim_vm vms[16];
	struct demand_vcpu est[16];
	const uint64_t sample_every = 200; /* quanta: a 200 ms sampling period */

	memset(vms, 0, sizeof(vms));
	for (unsigned i = 0; i < nvm; i++) {
		vms[i].work_left = 4;
		vms[i].last_ran = i; /* a fixed initial order */
		demand_vcpu_init(&est[i], 10, 0.3);
	}
	for (uint64_t step = 0; step <= 4000; step++) {
		if (step % sample_every == 0) {
			for (unsigned i = 0; i < nvm; i++) {
				struct demand_counters c = ctr(step * QUANTUM, vms[i].run_ns,
							       vms[i].ready_ns);
				demand_vcpu_update(&est[i], &c);
			}
		}
		simulate(vms, nvm, ncpu, 4, 1, step);
	}
	struct demand_ratios per[16];
	for (unsigned i = 0; i < nvm; i++) {
		assert_int_equal(est[i].nr_intervals, 20);
		struct demand_interval w = demand_vcpu_window(&est[i]);
		struct demand_ratios r = demand_ratios_of(&w);
		assert_near(r.usage, want_usage, tol);
		assert_near(r.demand, want_demand, tol);
		assert_near(est[i].ewma.avg.demand, want_demand, tol);
		assert_near(demand_ratios_of(&est[i].last).demand, want_demand, tol);
		per[i] = r;
	}
	/* The whole host: demand sums to 8 CPUs on a 2-CPU host. */
	struct demand_ratios host = demand_ratios_sum(per, nvm);
	assert_near(host.usage, want_usage * nvm, tol * nvm);
	assert_near(host.demand, want_demand * nvm, tol * nvm);
}

static void test_paper_table_10_vms_2_cpus(void **state)
{
	(void)state;
	/* 10 x 80 % = 8 CPUs of demand on 2: each gets 20 %, needs 80 %. */
	run_table(10, 2, 0.20, 0.80, 0.02);
}

static void test_alone_usage_equals_demand(void **state)
{
	(void)state;
	/* Without contention the two agree: 80 % each. */
	run_table(2, 2, 0.80, 0.80, 0.01);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_interval_decomposes_period),
		cmocka_unit_test(test_zero_period_is_no_interval),
		cmocka_unit_test(test_counters_backwards_reset),
		cmocka_unit_test(test_vcpu_that_never_ran),
		cmocka_unit_test(test_clamps_inconsistent_reads),
		cmocka_unit_test(test_halt_polling_counts_as_wait),
		cmocka_unit_test(test_window_slides),
		cmocka_unit_test(test_window_weights_by_length),
		cmocka_unit_test(test_window_from_raw_counters),
		cmocka_unit_test(test_ewma),
		cmocka_unit_test(test_vm_sum),
		cmocka_unit_test(test_paper_table_10_vms_2_cpus),
		cmocka_unit_test(test_alone_usage_equals_demand),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
