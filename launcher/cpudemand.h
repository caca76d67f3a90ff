/* The CPU demand of mote-fnd's instances, for admission (issue 10 asks
 * for admission from issue 9's demand metrics).
 *
 * Clones run with --no-api, so the launcher does not ask mote: it reads
 * the same signal mote's own metrics read, the scheduler counters of each
 * monitor's vCPU threads (/proc/<pid>/task/<tid>/schedstat: run time and
 * run-queue delay), and feeds them to issue 9's estimator
 * (metrics/demand.h): demand = Used / (Period - Ready), i.e. the CPU the
 * vCPU would use with a CPU of its own. Under contention usage understates
 * it; demand does not. An instance's figure is the sum over its vCPUs, in
 * CPUs, smoothed (EWMA). No guest cooperation, no connection to the VM. */
#ifndef MOTE_LAUNCHER_CPUDEMAND_H
#define MOTE_LAUNCHER_CPUDEMAND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "metrics/demand.h"

#define CPUD_MAX_VCPUS 4  /* vCPU threads followed per instance (the first ones) */
#define CPUD_ALPHA 0.5    /* weight of the newest interval */

struct cpu_demand {
	pid_t tid[CPUD_MAX_VCPUS];
	unsigned nr_tids;   /* 0: not looked up yet */
	bool no_tids;       /* looked up, none found: not sampled again */
	bool have_prev;
	bool primed;        /* cpus holds at least one interval */
	struct demand_counters prev[CPUD_MAX_VCPUS];
	double cpus;        /* EWMA of the summed demand, in CPUs */
};

/* "run_ns ready_ns slices\n" (schedstat) -> the first two. 0 or -EINVAL. */
int schedstat_parse(const char *buf, uint64_t *run_ns, uint64_t *ready_ns);

/* One reading of every followed vCPU (cur[0..nr_tids-1]). Returns 0 when
 * it added an interval to d->cpus, -EAGAIN for the first reading (or no
 * time passed), -ERANGE when a counter went backwards (baseline again). */
int cpu_demand_feed(struct cpu_demand *d, const struct demand_counters *cur, double alpha);

/* Finds monitor pid's vCPU threads (comm "mote-vcpu*"). 0 or -errno
 * (-ENOENT: none). */
int cpu_demand_find_vcpus(struct cpu_demand *d, pid_t pid);

/* Reads the followed vCPUs' counters now (t_ns: CLOCK_MONOTONIC). */
int cpu_demand_read(const struct cpu_demand *d, pid_t pid, struct demand_counters *cur);

#endif
