/* GET /metrics: Prometheus text exposition of the launcher. */
#include "launcher/fnd_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void mprintf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mprintf(struct mbuf *b, const char *fmt, ...)
{
	va_list ap;

	for (;;) {
		size_t room = b->cap - b->len;
		va_start(ap, fmt);
		int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->oom = true;
			return;
		}
		if (b->p && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 8192;
		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q) {
			b->oom = true;
			return;
		}
		b->p = q;
		b->cap = cap;
	}
}

static void hist_out(struct mbuf *b, const char *metric, const char *fn, const char *extra,
		     const struct hist *h)
{
	uint64_t cum = 0;

	for (int i = 0; i < HIST_BUCKETS; i++) {
		cum += h->bucket[i];
		mprintf(b, "%s_bucket{function=\"%s\"%s,le=\"%g\"} %llu\n", metric, fn, extra,
			(double)hist_bounds_us[i] / 1e6, (unsigned long long)cum);
	}
	cum += h->bucket[HIST_BUCKETS];
	mprintf(b, "%s_bucket{function=\"%s\"%s,le=\"+Inf\"} %llu\n", metric, fn, extra,
		(unsigned long long)cum);
	mprintf(b, "%s_sum{function=\"%s\"%s} %.6f\n", metric, fn, extra, (double)h->sum_us / 1e6);
	mprintf(b, "%s_count{function=\"%s\"%s} %llu\n", metric, fn, extra,
		(unsigned long long)h->count);
}

char *fnd_metrics_text(struct fnd *d, size_t *len)
{
	struct mbuf b = { 0 };
	struct admit_host h;

	fnd_host_state(d, &h);
	mprintf(&b, "# HELP mote_fnd_instances Live function VMs (monitors) on this host.\n"
		    "# TYPE mote_fnd_instances gauge\nmote_fnd_instances %u\n", d->nr_insts);
	mprintf(&b, "# TYPE mote_fnd_instances_max gauge\nmote_fnd_instances_max %u\n",
		d->cfg.limits.max_instances);
	mprintf(&b, "# HELP mote_fnd_guest_memory_mib Configured guest RAM of the live VMs.\n"
		    "# TYPE mote_fnd_guest_memory_mib gauge\nmote_fnd_guest_memory_mib %llu\n",
		(unsigned long long)d->mem_mib_live);
	mprintf(&b, "# TYPE mote_fnd_host_mem_available_mib gauge\nmote_fnd_host_mem_available_mib "
		    "%llu\n", (unsigned long long)h.free_mib);
	mprintf(&b, "# TYPE mote_fnd_open_fds gauge\nmote_fnd_open_fds %u\n", h.fds);
	mprintf(&b, "# TYPE mote_fnd_invocations_total counter\nmote_fnd_invocations_total %llu\n",
		(unsigned long long)d->invocations);
	mprintf(&b, "# TYPE mote_fnd_errors_total counter\nmote_fnd_errors_total %llu\n",
		(unsigned long long)d->errors);
	mprintf(&b, "# HELP mote_fnd_rejected_total Invocations refused by admission.\n"
		    "# TYPE mote_fnd_rejected_total counter\n"
		    "mote_fnd_rejected_total{reason=\"host_full\"} %llu\n"
		    "mote_fnd_rejected_total{reason=\"function_full\"} %llu\n",
		(unsigned long long)d->rejected_host, (unsigned long long)d->rejected_fn);

	mprintf(&b, "# HELP mote_fnd_cpu_demand Summed CPU demand of the ready instances (their "
		    "vCPU threads' Used / (Period - Ready), smoothed), in CPUs.\n"
		    "# TYPE mote_fnd_cpu_demand gauge\nmote_fnd_cpu_demand %.4f\n", h.cpu_demand);
	mprintf(&b, "# HELP mote_fnd_cpu_demand_limit CPUs of demand admission allows (capacity x "
		    "overcommit; 0: not checked).\n"
		    "# TYPE mote_fnd_cpu_demand_limit gauge\nmote_fnd_cpu_demand_limit %.4f\n",
		d->cfg.limits.cpu_capacity * d->cfg.limits.cpu_overcommit);
	mprintf(&b, "# HELP mote_fn_cpu_demand Summed CPU demand of a function's sampled instances, "
		    "in CPUs.\n# TYPE mote_fn_cpu_demand gauge\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		mprintf(&b, "mote_fn_cpu_demand{function=\"%s\"} %.4f\n", fn->spec.name,
			fn->cpu_demand > 0 ? fn->cpu_demand : 0);
	mprintf(&b, "# HELP mote_fn_instances Instances of a function by state.\n"
		    "# TYPE mote_fn_instances gauge\n");
	for (struct function *fn = d->fns; fn; fn = fn->next) {
		unsigned by_state[INST_NR_STATES] = { 0 };
		for (struct instance *i = fn->insts; i; i = i->next)
			by_state[i->state]++;
		for (int s = 0; s < INST_NR_STATES - 1; s++)
			mprintf(&b, "mote_fn_instances{function=\"%s\",state=\"%s\"} %u\n",
				fn->spec.name, inst_state_name((enum inst_state)s), by_state[s]);
	}
	mprintf(&b, "# HELP mote_fn_starts_total Instance starts, and warm reuses, by kind.\n"
		    "# TYPE mote_fn_starts_total counter\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		for (int k = 0; k < START_NR; k++)
			mprintf(&b, "mote_fn_starts_total{function=\"%s\",kind=\"%s\"} %llu\n",
				fn->spec.name, start_kind_name((enum start_kind)k),
				(unsigned long long)fn->starts[k]);
	mprintf(&b, "# HELP mote_fn_stream_retries_total Clones whose first stream the guest "
		    "dropped right after accepting it (answered on a second one).\n"
		    "# TYPE mote_fn_stream_retries_total counter\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		mprintf(&b, "mote_fn_stream_retries_total{function=\"%s\"} %llu\n", fn->spec.name,
			(unsigned long long)fn->stream_retries);
	mprintf(&b, "# TYPE mote_fn_start_failures_total counter\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		mprintf(&b, "mote_fn_start_failures_total{function=\"%s\"} %llu\n", fn->spec.name,
			(unsigned long long)fn->start_failures);
	mprintf(&b, "# HELP mote_fn_invocations_total Completed invocations by runtime status.\n"
		    "# TYPE mote_fn_invocations_total counter\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		for (uint32_t s = 0; s < 6; s++)
			mprintf(&b, "mote_fn_invocations_total{function=\"%s\",status=\"%s\"} %llu\n",
				fn->spec.name, fn_status_name(s), (unsigned long long)fn->by_status[s]);
	mprintf(&b, "# TYPE mote_fn_errors_total counter\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		mprintf(&b, "mote_fn_errors_total{function=\"%s\"} %llu\n", fn->spec.name,
			(unsigned long long)fn->errors);
	mprintf(&b, "# TYPE mote_fn_queued gauge\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		mprintf(&b, "mote_fn_queued{function=\"%s\"} %u\n", fn->spec.name, fn->nr_queued);
	mprintf(&b, "# HELP mote_fn_start_seconds Spawn of the monitor (a standby: its take) to ready.\n"
		    "# TYPE mote_fn_start_seconds histogram\n");
	for (struct function *fn = d->fns; fn; fn = fn->next) {
		for (int k = 0; k < START_WARM; k++) {
			char label[48];
			snprintf(label, sizeof(label), ",kind=\"%s\"",
				 start_kind_name((enum start_kind)k));
			hist_out(&b, "mote_fn_start_seconds", fn->spec.name, label,
				 &fn->start_hist[k]);
		}
	}
	mprintf(&b, "# HELP mote_fn_invoke_seconds Request received to response, in the launcher.\n"
		    "# TYPE mote_fn_invoke_seconds histogram\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		hist_out(&b, "mote_fn_invoke_seconds", fn->spec.name, "", &fn->total_hist);
	mprintf(&b, "# TYPE mote_fn_handler_seconds histogram\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		hist_out(&b, "mote_fn_handler_seconds", fn->spec.name, "", &fn->handler_hist);
	mprintf(&b, "# TYPE mote_fn_queue_seconds histogram\n");
	for (struct function *fn = d->fns; fn; fn = fn->next)
		hist_out(&b, "mote_fn_queue_seconds", fn->spec.name, "", &fn->queue_hist);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}
