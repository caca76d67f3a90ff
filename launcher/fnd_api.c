/* mote-fnd's HTTP handlers: the functions API on top of fnd.c. */
#include "launcher/fnd_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define SCALE_MAX 20000
#define SCALE_PARALLEL_DEFAULT 32

static void respond_json(struct http_req *r, int status, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

	http_respond(r, status, NULL, NULL, s ? s : "{}", s ? strlen(s) : 2);
	free(s);
	json_decref(o);
}

static json_t *fn_json(struct function *fn, bool details)
{
	unsigned ready = 0, busy = 0;

	for (struct instance *inst = fn->insts; inst; inst = inst->next) {
		if (inst->state == INST_READY && inst->inflight)
			busy++;
		else if (inst->state == INST_READY)
			ready++;
	}
	json_t *o = json_pack(
		"{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s, "
		"s:{s:I, s:I, s:I, s:I, s:I}, s:I, s:I, s:{s:I, s:I, s:I, s:I}, s:I, s:I, s:I}",
		"name", fn->spec.name, "image", fn->spec.image, "mem_mib", (json_int_t)fn->spec.mem_mib,
		"vcpus", (json_int_t)fn->spec.vcpus, "concurrency", (json_int_t)fn->spec.concurrency,
		"idle_ttl_s", (json_int_t)fn->spec.idle_ttl_s, "max_instances",
		(json_int_t)fn->spec.max_instances, "timeout_ms", (json_int_t)fn->spec.timeout_ms,
		"standby", (json_int_t)fn->spec.standby, "snapshot", snap_state_name(fn->snap), "instances", "total", (json_int_t)fn->nr_insts,
		"starting", (json_int_t)fn->nr_starting, "standby", (json_int_t)fn->nr_standby, "idle", (json_int_t)ready, "busy",
		(json_int_t)busy, "queued", (json_int_t)fn->nr_queued, "inflight",
		(json_int_t)fn->nr_inflight, "starts", "cold-boot", (json_int_t)fn->starts[START_COLD],
		"snapshot-restore", (json_int_t)fn->starts[START_RESTORE], "snapshot-standby",
		(json_int_t)fn->starts[START_STANDBY], "warm",
		(json_int_t)fn->starts[START_WARM], "invocations", (json_int_t)fn->invocations,
		"errors", (json_int_t)fn->errors, "rejected", (json_int_t)fn->rejected);
	if (!o)
		return NULL;
	if (fn->snap_note[0])
		json_object_set_new(o, "snapshot_note", json_string(fn->snap_note));
	if (fn->boot_error[0])
		json_object_set_new(o, "last_start_error", json_string(fn->boot_error));
	if (details) {
		json_t *arr = json_array();
		uint64_t now = ev_now_ns();
		for (struct instance *inst = fn->insts; inst && arr; inst = inst->next)
			json_array_append_new(
				arr, json_pack("{s:s, s:I, s:s, s:s, s:I, s:I, s:I}", "name", inst->name,
					       "pid", (json_int_t)inst->pid, "state",
					       inst_state_name(inst->state), "start",
					       start_kind_name(inst->kind), "inflight",
					       (json_int_t)inst->inflight, "age_ms",
					       (json_int_t)((now - inst->spawn_ns) / 1000000), "idle_ms",
					       (json_int_t)(inst->inflight || !inst->last_used_ns ?
								    0 :
								    (now - inst->last_used_ns) / 1000000)));
		json_object_set_new(o, "instance_list", arr);
	}
	return o;
}

/* ---- scale and check: internal invocations (probes) ---------------------------- */

struct batch {
	struct fnd *d;
	struct function *fn;
	struct http_req *r;
	unsigned requested, launched, pending, ok, failed, parallel;
	uint64_t t0;
	uint64_t *lat_us;
	/* spawn request -> exec, exec -> stream accepted, accepted -> answer,
	 * and what starting it cost the daemon's loop */
	uint64_t *phase_us[4];
	unsigned nr_phases;
	char first_error[512];
	bool check, in_launch;
	struct instance **targets;      /* check: the instances to probe */
	unsigned nr_targets;
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void batch_finish(struct batch *b)
{
	uint64_t p50 = 0, p99 = 0, max = 0;

	if (b->ok) {
		qsort(b->lat_us, b->ok, sizeof(uint64_t), cmp_u64);
		p50 = b->lat_us[(b->ok - 1) / 2];
		p99 = b->lat_us[(size_t)((b->ok - 1) * 0.99)];
		max = b->lat_us[b->ok - 1];
	}
	uint64_t wall = (ev_now_ns() - b->t0) / 1000;
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:f}", "requested",
			      (json_int_t)b->requested, b->check ? "answered" : "started",
			      (json_int_t)b->ok, "failed", (json_int_t)b->failed, "wall_us",
			      (json_int_t)wall, "first_response_us", "p50", (json_int_t)p50, "p99",
			      (json_int_t)p99, "max", (json_int_t)max, "per_second",
			      wall ? b->ok * 1e6 / (double)wall : 0.0);
	if (o && b->first_error[0])
		json_object_set_new(o, "first_error", json_string(b->first_error));
	if (o && b->nr_phases) {
		static const char *const names[4] = { "spawn", "accept", "answer", "loop" };
		json_t *ph = json_object();
		for (int k = 0; k < 4; k++) {
			qsort(b->phase_us[k], b->nr_phases, sizeof(uint64_t), cmp_u64);
			json_object_set_new(ph, names[k],
					    json_pack("{s:I, s:I}", "p50",
						      (json_int_t)b->phase_us[k][(b->nr_phases - 1) / 2],
						      "p99",
						      (json_int_t)b->phase_us[k][(size_t)((b->nr_phases - 1) *
											   0.99)]));
		}
		json_object_set_new(o, "phases_us", ph);
	}
	respond_json(b->r, b->failed && !b->ok ? 503 : 200, o);
	for (int k = 0; k < 4; k++)
		free(b->phase_us[k]);
	free(b->lat_us);
	free(b->targets);
	free(b);
}

static void batch_launch(struct batch *b);

static void probe_done(struct invocation *inv, int status, const char *msg)
{
	struct batch *b = inv->done_opaque;

	b->pending--;
	if (status == 200) {
		b->lat_us[b->ok++] = (ev_now_ns() - inv->t_arrive) / 1000;
		if (inv->t_spawn && inv->t_connected && b->phase_us[0]) {
			unsigned n = b->nr_phases++;
			/* The exec is seen when the spawner answers; a reply read
			 * after the stream was accepted counts as no later. */
			uint64_t ex = inv->t_exec && inv->t_exec < inv->t_connected ? inv->t_exec :
									       inv->t_dispatch;
			b->phase_us[0][n] = (ex - inv->t_spawn) / 1000;
			b->phase_us[1][n] = (inv->t_connected - ex) / 1000;
			b->phase_us[2][n] = (inv->t_done - inv->t_connected) / 1000;
			b->phase_us[3][n] = inv->loop_ns / 1000;
		}
	} else {
		b->failed++;
		if (!b->first_error[0])
			snprintf(b->first_error, sizeof(b->first_error), "%d: %s", status, msg);
	}
	if (b->in_launch)
		return; /* failed synchronously: the launching loop goes on */
	batch_launch(b);
	if (!b->pending && b->launched == b->requested)
		batch_finish(b);
}

static void batch_launch(struct batch *b)
{
	b->in_launch = true;
	/* The function went away (or the daemon is stopping): launch no more. */
	if (b->fn->deleted || b->d->stopping) {
		if (b->launched < b->requested && !b->first_error[0])
			snprintf(b->first_error, sizeof(b->first_error), "%s",
				 b->d->stopping ? "the launcher is shutting down" :
						  "the function was deleted");
		b->failed += b->requested - b->launched;
		b->launched = b->requested;
	}
	while (b->launched < b->requested && b->pending < b->parallel) {
		struct invocation *inv = inv_new(b->d, b->fn, NULL);
		char why[512];

		b->launched++;
		if (!inv) {
			b->failed++;
			continue;
		}
		inv->done_cb = probe_done;
		inv->done_opaque = b;
		b->pending++;
		if (b->check) {
			struct instance *inst = b->targets[b->launched - 1];
			/* It may have gone or filled up meanwhile. */
			bool alive = false;
			for (struct instance *i = b->fn->insts; i; i = i->next)
				alive |= i == inst;
			if (alive && inst->state == INST_READY &&
			    inst->inflight < b->fn->spec.concurrency) {
				fnd_probe_instance(b->d, inst, inv);
				continue;
			}
			snprintf(why, sizeof(why), "instance stopped before it was checked");
		} else if (fnd_start_probe(b->d, b->fn, inv, why, sizeof(why)) == 0) {
			continue;
		}
		free(inv);
		b->pending--;
		b->failed++;
		if (!b->first_error[0])
			snprintf(b->first_error, sizeof(b->first_error), "%s", why);
		/* The host or the function is full: more of the same will not start. */
		if (!b->check) {
			b->failed += b->requested - b->launched;
			b->launched = b->requested;
		}
	}
	b->in_launch = false;
}

static void handle_batch(struct fnd *d, struct function *fn, struct http_req *r, bool check)
{
	json_t *o = NULL, *v;
	json_error_t je;
	unsigned add = 1, parallel = SCALE_PARALLEL_DEFAULT;

	if (r->body_len) {
		o = json_loadb(r->body, r->body_len, 0, &je);
		if (!json_is_object(o)) {
			json_decref(o);
			http_respond_error(r, 400, "bad JSON: expected an object like {\"add\": 10}");
			return;
		}
		if ((v = json_object_get(o, "add"))) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > SCALE_MAX) {
				json_decref(o);
				http_respond_error(r, 400, "add must be an integer from 1 to %d", SCALE_MAX);
				return;
			}
			add = (unsigned)json_integer_value(v);
		}
		if ((v = json_object_get(o, "parallel"))) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > 1024) {
				json_decref(o);
				http_respond_error(r, 400, "parallel must be an integer from 1 to 1024");
				return;
			}
			parallel = (unsigned)json_integer_value(v);
		}
		json_decref(o);
	}
	if (!check && fn->snap == SNAP_BUILDING) {
		http_respond_error(r, 503, "function %s: its warm snapshot is being built; retry",
				   fn->spec.name);
		return;
	}
	struct batch *b = calloc(1, sizeof(*b));
	if (!b) {
		http_respond_error(r, 500, "out of memory");
		return;
	}
	b->d = d;
	b->fn = fn;
	b->r = r;
	b->check = check;
	b->parallel = parallel;
	b->t0 = ev_now_ns();
	if (check) {
		b->targets = calloc(fn->nr_insts + 1, sizeof(*b->targets));
		for (struct instance *inst = fn->insts; inst && b->targets; inst = inst->next)
			if (inst->state == INST_READY && inst->inflight < fn->spec.concurrency)
				b->targets[b->nr_targets++] = inst;
		add = b->nr_targets;
	}
	b->requested = add;
	b->lat_us = calloc(add + 1, sizeof(uint64_t));
	for (int k = 0; k < 4; k++)
		b->phase_us[k] = calloc(add + 1, sizeof(uint64_t));
	if (!b->lat_us || !b->phase_us[0] || !b->phase_us[1] || !b->phase_us[2] ||
	    !b->phase_us[3] || (check && !b->targets)) {
		for (int k = 0; k < 4; k++)
			free(b->phase_us[k]);
		free(b->lat_us);
		free(b->targets);
		free(b);
		http_respond_error(r, 500, "out of memory");
		return;
	}
	r->data = b;
	batch_launch(b);
	if (!b->pending && b->launched == b->requested)
		batch_finish(b);
}

/* ---- the handler ----------------------------------------------------------------- */

void fnd_http_handler(void *opaque, struct http_req *r)
{
	struct fnd *d = opaque;
	char name[FN_NAME_MAX + 1], err[1024];
	enum fnd_route route = fnd_route(r->method, r->path, name);
	struct function *fn = NULL;

	switch (route) {
	case ROUTE_NOT_FOUND:
		http_respond_error(r, 404, "no such endpoint: %s %s", r->method, r->path);
		return;
	case ROUTE_BAD_METHOD:
		http_respond_error(r, 405, "%s is not allowed on %s", r->method, r->path);
		return;
	case ROUTE_BAD_NAME:
		http_respond_error(r, 400, "a function name is 1-%d letters, digits or '-'",
				   FN_NAME_MAX);
		return;
	case ROUTE_METRICS: {
		size_t len;
		char *text = fnd_metrics_text(d, &len);
		if (!text) {
			http_respond_error(r, 500, "out of memory");
			return;
		}
		http_respond(r, 200, "text/plain; version=0.0.4", NULL, text, len);
		free(text);
		return;
	}
	case ROUTE_LIST: {
		json_t *arr = json_array();
		for (fn = d->fns; fn && arr; fn = fn->next)
			json_array_append_new(arr, fn_json(fn, false));
		respond_json(r, 200, json_pack("{s:o}", "functions", arr));
		return;
	}
	case ROUTE_PUT: {
		struct fn_spec spec;
		bool created;
		if (d->stopping) {
			http_respond_error(r, 503, "the launcher is shutting down");
			return;
		}
		if (fn_spec_parse(name, r->body, r->body_len, &spec, err, sizeof(err))) {
			http_respond_error(r, 400, "%s", err);
			return;
		}
		if (fnd_register(d, &spec, &created, err, sizeof(err))) {
			http_respond_error(r, 400, "%s", err);
			return;
		}
		respond_json(r, created ? 201 : 200, fn_json(fnd_find(d, name), false));
		return;
	}
	default:
		break;
	}
	fn = fnd_find(d, name);
	if (!fn) {
		http_respond_error(r, 404, "no function named '%s' (register it with PUT "
					   "/functions/%s)", name, name);
		return;
	}
	switch (route) {
	case ROUTE_GET:
		respond_json(r, 200, fn_json(fn, true));
		return;
	case ROUTE_DELETE:
		fnd_delete(d, fn);
		http_respond(r, 204, NULL, NULL, NULL, 0);
		return;
	case ROUTE_SCALE:
	case ROUTE_CHECK:
		handle_batch(d, fn, r, route == ROUTE_CHECK);
		return;
	case ROUTE_INVOKE: {
		struct invocation *inv = inv_new(d, fn, r);
		if (!inv) {
			http_respond_error(r, 500, "out of memory");
			return;
		}
		fnd_invoke(d, inv);
		return;
	}
	default:
		http_respond_error(r, 500, "unhandled route");
		return;
	}
}
