/* Admission: what to do with an invocation that finds no free instance
 * slot, from the host's caps and its live demand (pure arithmetic, so it
 * is unit-tested on its own). */
#ifndef MOTE_LAUNCHER_ADMIT_H
#define MOTE_LAUNCHER_ADMIT_H

#include <stddef.h>
#include <stdint.h>

struct admit_limits {
	unsigned max_instances;     /* live VMs on the host */
	uint64_t max_mem_mib;       /* sum of the guests' configured RAM; 0 = no cap */
	uint64_t min_free_mib;      /* keep this much host MemAvailable */
	unsigned max_fds;           /* the daemon's own fd budget (RLIMIT_NOFILE less a margin) */
	unsigned max_queue;         /* waiting invocations per function */
	/* CPU demand (cpudemand.h): the instances' summed demand may reach
	 * cpu_capacity x cpu_overcommit CPUs; overcommit 0 = not checked. */
	double cpu_capacity, cpu_overcommit;
};

/* The host now. */
struct admit_host {
	unsigned instances;         /* live, including starting */
	uint64_t mem_mib;           /* configured RAM of those */
	uint64_t free_mib;          /* MemAvailable */
	unsigned fds;               /* fds the daemon holds */
	double cpu_demand;          /* the ready instances' summed CPU demand, CPUs */
};

/* One function now. */
struct admit_fn {
	unsigned instances;         /* live, including starting */
	unsigned starting;
	unsigned free_slots;        /* on ready instances: concurrency - in flight */
	unsigned queued;            /* waiting already */
	unsigned concurrency, max_instances;
	unsigned mem_mib;
	double cpu_profile;         /* what one more instance is expected to demand, CPUs */
};

enum admit_verdict {
	ADMIT_RUN,          /* a ready instance has a free slot */
	ADMIT_QUEUE,        /* wait: a starting or busy instance will take it */
	ADMIT_START,        /* start a new instance for it */
	ADMIT_FN_FULL,      /* 429: the function is at max_instances and its queue is full */
	ADMIT_HOST_FULL,    /* 503: no room on the host and nothing of this function to wait for */
};

/* fds one start needs in the daemon at its peak (boot listener, its
 * accepted stream, an invocation stream). */
#define ADMIT_FDS_PER_START 3

/* Decides, and when refusing writes a message that says which limit. */
enum admit_verdict admit_decide(const struct admit_limits *lim, const struct admit_host *host,
				const struct admit_fn *fn, char *why, size_t whylen);

/* Why the host cannot take one more instance of mem_mib expected to
 * demand cpu_profile CPUs ("" and 0 when it can). */
int admit_host_room(const struct admit_limits *lim, const struct admit_host *host,
		    unsigned mem_mib, double cpu_profile, char *why, size_t whylen);

#endif
