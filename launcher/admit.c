/* See admit.h. */
#include "launcher/admit.h"

#include <stdbool.h>
#include <stdio.h>

int admit_host_room(const struct admit_limits *lim, const struct admit_host *host,
		    unsigned mem_mib, double cpu_profile, char *why, size_t whylen)
{
	double cpu_limit = lim->cpu_capacity * lim->cpu_overcommit;

	if (whylen)
		why[0] = '\0';
	if (host->instances >= lim->max_instances) {
		snprintf(why, whylen, "host is full: %u of %u instances live (--max-instances)",
			 host->instances, lim->max_instances);
		return -1;
	}
	if (lim->max_mem_mib && host->mem_mib + mem_mib > lim->max_mem_mib) {
		snprintf(why, whylen,
			 "host is full: %llu MiB of guest memory committed, %u more would pass "
			 "--max-mem-mib %llu",
			 (unsigned long long)host->mem_mib, mem_mib,
			 (unsigned long long)lim->max_mem_mib);
		return -1;
	}
	if (host->free_mib < lim->min_free_mib) {
		snprintf(why, whylen,
			 "host is low on memory: %llu MiB available, below the reserve of %llu MiB "
			 "(--min-free-mib)",
			 (unsigned long long)host->free_mib, (unsigned long long)lim->min_free_mib);
		return -1;
	}
	/* The instances already want more CPU than the host is to give
	 * (capacity x overcommit): another VM would only slow them all. Not
	 * a memory limit: an idle instance demands ~0 and never stops one. */
	if (lim->cpu_overcommit > 0 && host->cpu_demand + cpu_profile > cpu_limit) {
		snprintf(why, whylen,
			 "host is busy: its instances demand %.2f CPUs, one more (~%.2f) would pass "
			 "the limit of %.2f (%.2g CPUs x overcommit %.2g, --cpu-overcommit)",
			 host->cpu_demand, cpu_profile, cpu_limit, lim->cpu_capacity,
			 lim->cpu_overcommit);
		return -1;
	}
	if (host->fds + ADMIT_FDS_PER_START > lim->max_fds) {
		snprintf(why, whylen, "launcher is out of file descriptors: %u in use of %u",
			 host->fds, lim->max_fds);
		return -1;
	}
	return 0;
}

enum admit_verdict admit_decide(const struct admit_limits *lim, const struct admit_host *host,
				const struct admit_fn *fn, char *why, size_t whylen)
{
	if (whylen)
		why[0] = '\0';
	if (fn->free_slots > fn->queued)
		return ADMIT_RUN;
	/* Each starting instance brings `concurrency` slots, one of which its
	 * own first invocation takes; the others can absorb waiters. */
	uint64_t coming = (uint64_t)fn->starting * (fn->concurrency - 1) + fn->free_slots;
	if (fn->queued < coming)
		return ADMIT_QUEUE;
	bool queue_room = fn->queued < lim->max_queue;
	if (fn->instances >= fn->max_instances) {
		if (queue_room)
			return ADMIT_QUEUE;
		snprintf(why, whylen,
			 "function is at max_instances=%u, all busy, and %u invocations are already "
			 "waiting",
			 fn->max_instances, fn->queued);
		return ADMIT_FN_FULL;
	}
	char host_why[256];
	if (admit_host_room(lim, host, fn->mem_mib, fn->cpu_profile, host_why, sizeof(host_why))) {
		/* Instances of this function will free a slot: wait for one. */
		if (fn->instances > 0 && queue_room)
			return ADMIT_QUEUE;
		snprintf(why, whylen, "%s", host_why);
		return ADMIT_HOST_FULL;
	}
	return ADMIT_START;
}
