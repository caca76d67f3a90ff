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

static void hist_push(struct demand_vcpu *v, const struct demand_counters *c)
{
	unsigned n = v->window.cap + 1;

	v->hist[v->hist_head] = *c;
	v->hist_head = (v->hist_head + 1) % n;
	if (v->hist_len < n)
		v->hist_len++;
}

struct demand_interval demand_vcpu_window(const struct demand_vcpu *v)
{
	struct demand_interval iv = { 0 };
	unsigned n = v->window.cap + 1;

	if (v->hist_len < 2)
		return iv;
	const struct demand_counters *newest = &v->hist[(v->hist_head + n - 1) % n];
	const struct demand_counters *oldest = &v->hist[(v->hist_head + n - v->hist_len) % n];
	if (demand_interval_between(oldest, newest, &iv))
		memset(&iv, 0, sizeof(iv));
	return iv;
}

/* The EWMA smooths the raw deltas (Period, Used, Ready, unclamped) and
 * takes the ratios of the averages, for the same reason the window uses
 * the raw counters: Ready counted an interval late then cancels out. */
static void ewma_components(struct demand_vcpu *v, const struct demand_counters *cur)
{
	const struct demand_counters *p = &v->ewma_prev;
	double period = (double)(cur->t_ns - p->t_ns);
	double run = (double)(cur->run_ns - p->run_ns), poll = (double)(cur->poll_ns - p->poll_ns);
	double used = run > poll ? run - poll : 0, ready = (double)(cur->ready_ns - p->ready_ns);
	double a = v->ewma.alpha;

	v->ewma_prev = *cur;
	if (!v->ewma.primed) {
		v->ew_period = period, v->ew_used = used, v->ew_ready = ready;
		v->ewma.primed = true;
	} else {
		v->ew_period += a * (period - v->ew_period);
		v->ew_used += a * (used - v->ew_used);
		v->ew_ready += a * (ready - v->ew_ready);
	}
	struct demand_interval iv = { 0 };
	if (v->ew_period >= 1) {
		double u = v->ew_used < v->ew_period ? v->ew_used : v->ew_period;
		double r = v->ew_ready < v->ew_period - u ? v->ew_ready : v->ew_period - u;
		iv.period_ns = (uint64_t)v->ew_period;
		iv.used_ns = (uint64_t)u;
		iv.ready_ns = (uint64_t)r;
		iv.wait_ns = iv.period_ns > iv.used_ns + iv.ready_ns
				     ? iv.period_ns - iv.used_ns - iv.ready_ns
				     : 0;
	}
	v->ewma.avg = demand_ratios_of(&iv);
}

int demand_vcpu_update(struct demand_vcpu *v, const struct demand_counters *cur)
{
	struct demand_interval iv;

	if (!v->have_prev) {
		v->prev = *cur;
		v->have_prev = true;
		v->ewma_prev = *cur;
		v->hist_len = 0;
		hist_push(v, cur);
		return -EAGAIN;
	}
	int ret = demand_interval_between(&v->prev, cur, &iv);
	if (ret == -EAGAIN)
		return ret; /* keep the older baseline: the next interval covers it */
	v->prev = *cur;
	if (ret) {
		/* A new baseline: the window restarts from it. */
		v->nr_resets++;
		v->ewma_prev = *cur;
		v->hist_len = 0;
		hist_push(v, cur);
		return ret;
	}
	hist_push(v, cur);
	v->last = iv;
	demand_window_push(&v->window, &iv);
	ewma_components(v, cur);
	v->nr_intervals++;
	return 0;
}
