/* The demand estimator; see demand.h. */
#include "metrics/demand.h"

#include <errno.h>
#include <string.h>

int demand_interval_between(const struct demand_counters *prev, const struct demand_counters *cur,
			    struct demand_interval *out)
{
	memset(out, 0, sizeof(*out));
	if (cur->t_ns < prev->t_ns || cur->run_ns < prev->run_ns ||
	    cur->ready_ns < prev->ready_ns || cur->poll_ns < prev->poll_ns)
		return -ERANGE;
	uint64_t period = cur->t_ns - prev->t_ns;
	uint64_t used = cur->run_ns - prev->run_ns;
	uint64_t ready = cur->ready_ns - prev->ready_ns;
	uint64_t poll = cur->poll_ns - prev->poll_ns;

	if (period == 0)
		return -EAGAIN;
	/* Polling for a wake-up is waiting, even though it ran on a CPU. */
	used = poll < used ? used - poll : 0;
	/* The counters and the clock are read one after the other: clamp. */
	if (used > period)
		used = period;
	if (ready > period - used)
		ready = period - used;
	out->period_ns = period;
	out->used_ns = used;
	out->ready_ns = ready;
	out->wait_ns = period - used - ready;
	return 0;
}

struct demand_ratios demand_ratios_of(const struct demand_interval *iv)
{
	struct demand_ratios r = { 0 };

	if (!iv->period_ns)
		return r;
	double period = (double)iv->period_ns;
	r.usage = (double)iv->used_ns / period;
	r.ready = (double)iv->ready_ns / period;
	uint64_t not_ready = iv->used_ns + iv->wait_ns; /* = period - ready */
	if (not_ready)
		r.demand = (double)iv->used_ns / (double)not_ready;
	else
		r.demand = iv->ready_ns ? 1.0 : 0.0;
	return r;
}

void demand_interval_add(struct demand_interval *a, const struct demand_interval *b)
{
	a->period_ns += b->period_ns;
	a->used_ns += b->used_ns;
	a->ready_ns += b->ready_ns;
	a->wait_ns += b->wait_ns;
}

struct demand_ratios demand_ratios_sum(const struct demand_ratios *per_vcpu, unsigned n)
{
	struct demand_ratios s = { 0 };

	for (unsigned i = 0; i < n; i++) {
		s.usage += per_vcpu[i].usage;
		s.demand += per_vcpu[i].demand;
		s.ready += per_vcpu[i].ready;
	}
	return s;
}

void demand_window_init(struct demand_window *w, unsigned cap)
{
	memset(w, 0, sizeof(*w));
	if (cap < 1)
		cap = 1;
	if (cap > DEMAND_WINDOW_MAX)
		cap = DEMAND_WINDOW_MAX;
	w->cap = cap;
}

void demand_window_push(struct demand_window *w, const struct demand_interval *iv)
{
	w->iv[w->head] = *iv;
	w->head = (w->head + 1) % w->cap;
	if (w->len < w->cap)
		w->len++;
}

/* Summing the window (rather than averaging ratios) weights each
 * interval by its length, so a late timer tick does not skew it. */
struct demand_interval demand_window_sum(const struct demand_window *w)
{
	struct demand_interval s = { 0 };

	for (unsigned i = 0; i < w->len; i++)
		demand_interval_add(&s, &w->iv[i]);
	return s;
}

void demand_ewma_init(struct demand_ewma *e, double alpha)
{
	memset(e, 0, sizeof(*e));
	if (!(alpha > 0.0) || alpha > 1.0)
		alpha = 1.0;
	e->alpha = alpha;
}

void demand_ewma_push(struct demand_ewma *e, const struct demand_ratios *r)
{
	if (!e->primed) {
		e->avg = *r;
		e->primed = true;
		return;
	}
	double a = e->alpha;
	e->avg.usage += a * (r->usage - e->avg.usage);
	e->avg.demand += a * (r->demand - e->avg.demand);
	e->avg.ready += a * (r->ready - e->avg.ready);
}

void demand_vcpu_init(struct demand_vcpu *v, unsigned window, double alpha)
{
	memset(v, 0, sizeof(*v));
	demand_window_init(&v->window, window);
	demand_ewma_init(&v->ewma, alpha);
}

int demand_vcpu_update(struct demand_vcpu *v, const struct demand_counters *cur)
{
	struct demand_interval iv;

	if (!v->have_prev) {
		v->prev = *cur;
		v->have_prev = true;
		return -EAGAIN;
	}
	int ret = demand_interval_between(&v->prev, cur, &iv);
	if (ret == -EAGAIN)
		return ret; /* keep the older baseline: the next interval covers it */
	v->prev = *cur;
	if (ret) {
		v->nr_resets++;
		return ret;
	}
	struct demand_ratios r = demand_ratios_of(&iv);
	v->last = iv;
	demand_window_push(&v->window, &iv);
	demand_ewma_push(&v->ewma, &r);
	v->nr_intervals++;
	return 0;
}
