/* Entitlement and admission arithmetic; see agent.h. */
#include "agent/agent.h"

#include <errno.h>
#include <math.h>

#define SHARES_V1_MIN 2
#define SHARES_V1_MAX 262144
#define WEIGHT_V2_MIN 1
#define WEIGHT_V2_MAX 10000
#define QUOTA_MIN_US 1000 /* the kernel refuses less */

void agent_policy_default(struct agent_policy *p)
{
	p->headroom = 1.25;
	p->min_cap_cpus = 0.1;
	p->period_us = 100000;
	p->cap = true;
}

static double clampd(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void agent_entitlement(const struct agent_policy *p, double demand_cpus, unsigned nr_vcpus,
		       struct agent_entitlement *out)
{
	if (!(demand_cpus >= 0))
		demand_cpus = 0; /* NaN or negative: nothing known */
	if (nr_vcpus == 0)
		nr_vcpus = 1;
	out->shares_v1 = (unsigned)clampd(round(demand_cpus * 1024), SHARES_V1_MIN, SHARES_V1_MAX);
	out->weight_v2 = (unsigned)clampd(round(demand_cpus * 100), WEIGHT_V2_MIN, WEIGHT_V2_MAX);
	out->period_us = p->period_us;
	if (!p->cap) {
		out->quota_us = -1;
		return;
	}
	double cap = clampd(demand_cpus * p->headroom, p->min_cap_cpus, (double)nr_vcpus);
	out->quota_us = (long)clampd(ceil(cap * p->period_us), QUOTA_MIN_US, 1e12);
}

int agent_admit(const struct agent_admission *a, double current, double profile, unsigned count,
		unsigned *max_fit, char *msg, size_t msglen)
{
	if (!(a->capacity_cpus > 0) || !(a->overcommit > 0) || !(current >= 0) ||
	    !(profile > 0)) {
		snprintf(msg, msglen, "admission needs capacity > 0, overcommit > 0, a profile "
			 "demand > 0 and a known current demand");
		return -EINVAL;
	}
	double limit = a->capacity_cpus * a->overcommit;
	double after = current + profile * count;
	double room = limit - current;
	unsigned fit = room > 0 ? (unsigned)floor(room / profile + 1e-9) : 0;

	*max_fit = fit;
	if (after <= limit + 1e-9) {
		snprintf(msg, msglen, "admitted: %u more VM(s) of %.2f CPU demand bring the host "
			 "from %.2f to %.2f CPUs of demand, within its limit of %.2f CPUs "
			 "(capacity %.2f x overcommit %.2f); %u would fit", count, profile, current,
			 after, limit, a->capacity_cpus, a->overcommit, fit);
		return 1;
	}
	snprintf(msg, msglen, "refused: %u more VM(s) of %.2f CPU demand would bring the host "
		 "from %.2f to %.2f CPUs of demand, over its limit of %.2f CPUs (capacity %.2f x "
		 "overcommit %.2f); at most %u fit", count, profile, current, after, limit,
		 a->capacity_cpus, a->overcommit, fit);
	return 0;
}
