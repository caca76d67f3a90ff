/* mote-fnd's invocations: placement (a free instance, a start, the
 * queue, or a refusal from admission), the stream to the instance's
 * runtime (guest/fn/protocol.h over its vsock socket), the answer. */
#include "launcher/fnd_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "launcher/hclient.h"
#include "vmm/log.h"

/* ---- invocations ----------------------------------------------------------------- */

static void inv_timer_cb(struct ev_timer *t);

static struct fnd *inv_d(struct function *fn)
{
	return fn->d;
}

struct invocation *inv_new(struct fnd *d, struct function *fn, struct http_req *req)
{
	struct invocation *inv = calloc(1, sizeof(*inv));

	if (!inv)
		return NULL;
	inv->d = d;
	inv->fn = fn;
	inv->req = req;
	inv->fd = -1;
	inv->w.fd = -1;
	inv->t_arrive = ev_now_ns();
	fn_reader_init(&inv->rd);
	ev_timer_init(&inv->timer, inv_timer_cb, inv);
	if (req) {
		inv->body = req->body;
		inv->body_len = req->body_len;
	}
	return inv;
}

static void queue_remove(struct invocation *inv)
{
	struct function *fn = inv->fn;

	if (!inv->queued)
		return;
	if (inv->qprev)
		inv->qprev->qnext = inv->qnext;
	else
		fn->q_head = inv->qnext;
	if (inv->qnext)
		inv->qnext->qprev = inv->qprev;
	else
		fn->q_tail = inv->qprev;
	inv->queued = false;
	fn->nr_queued--;
}

static void queue_push(struct invocation *inv)
{
	struct function *fn = inv->fn;

	inv->qnext = NULL;
	inv->qprev = fn->q_tail;
	if (fn->q_tail)
		fn->q_tail->qnext = inv;
	else
		fn->q_head = inv;
	fn->q_tail = inv;
	inv->queued = true;
	fn->nr_queued++;
	/* Waiting is bounded by the function's own timeout. */
	ev_timer_arm(inv->d->loop, &inv->timer, (uint64_t)fn->spec.timeout_ms * 1000000ull);
}

static void inv_close_sock(struct invocation *inv)
{
	if (inv->fd < 0)
		return;
	ev_del(inv->d->loop, &inv->w);
	close(inv->fd);
	inv->fd = -1;
	inv->w.fd = -1;
	inv->d->nr_inflight_socks--;
}

/* Ends inv's tie to its instance; broken: the VM is not to be trusted
 * with another invocation. */
static void inv_detach(struct invocation *inv, bool broken)
{
	struct fnd *d = inv->d;
	struct instance *inst = inv->inst;

	inv_close_sock(inv);
	ev_timer_cancel(d->loop, &inv->timer);
	queue_remove(inv);
	if (!inst)
		return;
	if (inv->iprev)
		inv->iprev->inext = inv->inext;
	else
		inst->invs = inv->inext;
	if (inv->inext)
		inv->inext->iprev = inv->iprev;
	inv->inst = NULL;
	inst->inflight--;
	inst->fn->nr_inflight--;
	if (inst->state != INST_DEAD)
		inst_event(d, inst, broken ? IEV_BROKEN : IEV_INVOKE_END);
}

static void inv_free(struct invocation *inv)
{
	fn_reader_free(&inv->rd);
	free(inv);
}

static void inv_timing_headers(struct invocation *inv, char *out, size_t len, const char *status)
{
	uint64_t now = inv->t_done ? inv->t_done : ev_now_ns();
	uint64_t disp = inv->t_dispatch ? inv->t_dispatch : now;

	snprintf(out, len,
		 "X-Mote-Status: %s\r\nX-Mote-Start: %s\r\nX-Mote-Queue-Us: %llu\r\n"
		 "X-Mote-Handler-Us: %u\r\nX-Mote-Total-Us: %llu\r\nX-Mote-Instance: %s\r\n",
		 status, inv->t_dispatch ? start_kind_name(inv->start) : "none",
		 (unsigned long long)((disp - inv->t_arrive) / 1000),
		 inv->rd.st == FNR_DONE ? inv->rd.hdr.handler_us : 0,
		 (unsigned long long)((now - inv->t_arrive) / 1000),
		 inv->inst_name[0] ? inv->inst_name : "none");
}

void inv_fail(struct invocation *inv, int status, bool broken, const char *fmt, ...)
{
	struct function *fn = inv->fn;
	char msg[1200], hdr[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	inv->t_done = ev_now_ns();
	inv_detach(inv, broken);
	fn->errors++;
	inv->d->errors++;
	if (inv->req) {
		inv_timing_headers(inv, hdr, sizeof(hdr), "launcher-error");
		json_t *o = json_pack("{s:s, s:s}", "error", msg, "function", fn->spec.name);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		http_respond(inv->req, status, NULL, hdr, s ? s : "{}", s ? strlen(s) : 2);
		free(s);
		json_decref(o);
	} else if (inv->done_cb) {
		inv->done_cb(inv, status, msg);
	}
	inv_free(inv);
	fn_pump(inv_d(fn), fn);
}

static void inv_complete(struct invocation *inv)
{
	struct function *fn = inv->fn;
	struct fn_reader *rd = &inv->rd;
	char hdr[512];
	int status = fn_status_http(rd->hdr.status);

	inv->t_done = ev_now_ns();
	if (inv->t_spawn && inv->inst) {
		inv->t_exec = inv->inst->exec_ns;
		inv->loop_ns = inv->inst->loop_ns;
	}
	if (inv->first_on_clone && inv->inst)
		log_debug("instance %s: spawn %llu us, then stream accepted after %llu us (%u "
			  "retries), answered after %llu us more",
			  inv->inst->name, (unsigned long long)((inv->t_dispatch - inv->inst->spawn_ns) / 1000),
			  (unsigned long long)((inv->t_connected - inv->t_dispatch) / 1000), inv->retries,
			  (unsigned long long)((inv->t_done - inv->t_connected) / 1000));
	inv_detach(inv, false);
	fn->invocations++;
	inv->d->invocations++;
	fn->by_status[rd->hdr.status < 7 ? rd->hdr.status : 7]++;
	if (status != 200)
		fn->errors++;
	hist_add(&fn->total_hist, (inv->t_done - inv->t_arrive) / 1000);
	hist_add(&fn->handler_hist, rd->hdr.handler_us);
	hist_add(&fn->queue_hist, (inv->t_dispatch - inv->t_arrive) / 1000);
	if (inv->req) {
		inv_timing_headers(inv, hdr, sizeof(hdr), fn_status_name(rd->hdr.status));
		http_respond(inv->req, status, "application/octet-stream", hdr, rd->body,
			     rd->hdr.body_len);
	} else if (inv->done_cb) {
		inv->done_cb(inv, status, status == 200 ? "ok" : rd->body);
	}
	inv_free(inv);
	fn_pump(inv_d(fn), fn);
}

/* The request's owner went away: the invocation goes on (the VM is busy
 * with it anyway), its answer is dropped. A queued one just leaves. */
static void inv_abort(struct http_req *r)
{
	struct invocation *inv = r->data;

	if (inv->queued) {
		queue_remove(inv);
		ev_timer_cancel(inv->d->loop, &inv->timer);
		http_respond(inv->req, 499, NULL, NULL, NULL, 0); /* frees r only */
		inv_free(inv);
	}
}

void inv_io(struct ev_watch *w, uint32_t events)
{
	struct invocation *inv = w->opaque;
	struct instance *inst = inv->inst;

	if (events & EPOLLOUT) {
		while (inv->sent < inv->prefix_len + inv->body_len) {
			const char *p;
			size_t n;
			if (inv->sent < inv->prefix_len) {
				p = inv->prefix + inv->sent;
				n = inv->prefix_len - inv->sent;
			} else {
				p = inv->body + (inv->sent - inv->prefix_len);
				n = inv->body_len - (inv->sent - inv->prefix_len);
			}
			ssize_t k = send(inv->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0 && errno == EAGAIN)
				break;
			if (k < 0)
				break; /* the read side reports what happened */
			inv->sent += (size_t)k;
		}
		if (inv->sent == inv->prefix_len + inv->body_len)
			ev_modify(inv->d->loop, &inv->w, EPOLLIN);
	}
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	for (int i = 0; i < 8; i++) {
		char buf[65536];
		ssize_t n = recv(inv->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			bool starting = inst->state == INST_RESTORING;
			if (inv->rd.st == FNR_HANDSHAKE && starting) {
				/* A clone whose runtime is not listening yet: again,
				 * after a pause. */
				inv_close_sock(inv);
				inv_retry_later(inv);
				return;
			}
			/* A clone's guest may accept a stream, then act on the
			 * transport reset the restore queued for it and drop the
			 * stream before reading the request: nothing came back, so
			 * nothing ran. Again, a few times. */
			if (inv->first_on_clone && inv->rd.st == FNR_HEADER && inv->rd.hdr_len == 0 &&
			    inv->reset_retries < 3) {
				inv->reset_retries++;
				inv->fn->stream_retries++;
				inv_close_sock(inv);
				/* The runtime is up and listening again: the shortest
				 * pause, not the backoff the socket's wait grew. */
				inv->retries = 0;
				inv_retry_later(inv);
				return;
			}
			if (inv->rd.st == FNR_HANDSHAKE)
				inv_fail(inv, 502, true,
					 "instance %s of function %s refused the invocation (its vsock "
					 "stream closed before the runtime accepted it)",
					 inst->name, inv->fn->spec.name);
			else
				inv_fail(inv, 502, true,
					 "instance %s of function %s closed the stream mid-invocation "
					 "(the VM died or was killed)",
					 inst->name, inv->fn->spec.name);
			return;
		}
		bool was_handshake = inv->rd.st == FNR_HANDSHAKE;
		if (fn_reader_feed(&inv->rd, buf, (size_t)n)) {
			inv_fail(inv, 502, true, "instance %s of function %s: %s", inst->name,
				 inv->fn->spec.name, inv->rd.error);
			return;
		}
		if (was_handshake && inv->rd.st != FNR_HANDSHAKE) {
			inv->t_connected = ev_now_ns();
			if (inst->state == INST_RESTORING)
				inst_event(inv->d, inst, IEV_CONNECTED);
			/* From here the runtime's deadline, and a grace. */
			ev_timer_arm(inv->d->loop, &inv->timer,
				     (uint64_t)(inv->fn->spec.timeout_ms + DEADLINE_GRACE_MS) * 1000000ull);
		}
		if (inv->rd.st == FNR_DONE) {
			inv_complete(inv);
			return;
		}
	}
}

static void inv_timer_cb(struct ev_timer *t)
{
	struct invocation *inv = t->opaque;
	struct instance *inst = inv->inst;

	if (inv->queued) {
		inv_fail(inv, 503, false,
			 "no instance of function %s became free within its timeout of %u ms",
			 inv->fn->spec.name, inv->fn->spec.timeout_ms);
		return;
	}
	if (!inst)
		return;
	if (inv->fd < 0) {
		inv_connect(inv); /* retry after backoff */
		return;
	}
	inv_fail(inv, 504, true,
		 "instance %s of function %s did not answer within %u ms (timeout_ms) plus %u ms; "
		 "the instance was stopped",
		 inst->name, inv->fn->spec.name, inv->fn->spec.timeout_ms, DEADLINE_GRACE_MS);
}

/* Backoff 100 us doubling to 0.5 ms, or to an eighth of the time waited
 * so far when that is more: a start that takes long (a loaded host) is
 * asked fewer times, so the polling does not take CPU from the VMs it
 * waits for (16 starts at a time on 2 CPUs took ~1 ms of the daemon's CPU
 * per start at a fixed 0.5 ms), for at most 1/8 more wait. */
void inv_retry_later(struct invocation *inv)
{
	uint64_t delay = RETRY_FIRST_NS << (inv->retries < 10 ? inv->retries : 10);
	uint64_t cap = (ev_now_ns() - inv->t_dispatch) / 8;

	if (cap < RETRY_MAX_NS)
		cap = RETRY_MAX_NS;
	inv->retries++;
	ev_timer_arm(inv->d->loop, &inv->timer, delay > cap ? cap : delay);
}

void inv_connect(struct invocation *inv)
{
	struct fnd *d = inv->d;
	struct instance *inst = inv->inst;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	bool starting = inst->state == INST_RESTORING;

	if (snprintf(a.sun_path, sizeof(a.sun_path), "%s/%s", inst->dir, VSOCK_NAME) >=
	    (int)sizeof(a.sun_path)) {
		inv_fail(inv, 500, false, "socket path of instance %s is too long", inst->name);
		return;
	}
	int fd = d->spare_sock >= 0 ? d->spare_sock
				    : socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	d->spare_sock = -1;
	if (fd < 0) {
		inv_fail(inv, 503, false, "launcher cannot open a socket: %s", strerror(errno));
		return;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
		int e = errno;
		if (starting && (e == ENOENT || e == ECONNREFUSED || e == EAGAIN)) {
			/* The clone has not opened its socket yet. The start
			 * deadline (the instance's timer) ends this. */
			d->spare_sock = fd;
			inv->connect_failed = true;
			inv_retry_later(inv);
			return;
		}
		close(fd);
		if (e == EAGAIN) {
			/* Backlog full on a live VM: its monitor is swamped. */
			inv_fail(inv, 503, false, "instance %s is not accepting streams (backlog full)",
				 inst->name);
			return;
		}
		inv_fail(inv, 502, true, "cannot reach instance %s of function %s: %s", inst->name,
			 inv->fn->spec.name, strerror(e));
		return;
	}
	inv->fd = fd;
	if (inst->wake_pending) {
		/* Its socket answers: the monitor is restored and its signalfd
		 * takes SIGUSR2 (before that, the signal would have killed it).
		 * The stream waits in the monitor until the guest runs. */
		inst->wake_ready = true;
		inst_wake(inst);
	} else if (starting) {
		uint64_t took = ev_now_ns() - inv->t_dispatch, *est = &inv->fn->clone_connect_ns;
		uint64_t grown = *est + *est / 8;
		if (!inv->connect_failed)
			/* The first try found the socket: it appeared some time
			 * before, so took is no floor but the wait itself (3/4 of
			 * the estimate). Taken as the floor, a figure learnt on a
			 * busier host shrank by only 1/4 per start (40, 30, 22,
			 * 17 ... ms of waiting for a socket there after ~3). Half
			 * of it: soon a first wait is short enough to fail once,
			 * and the polling after it measures the floor again (a
			 * quarter polled ~0.5 more times per start for no gain). */
			*est = took / 2;
		else
			*est = !*est || took < grown ? took : grown;
		inv->fn->clone_connect_busy = inv->fn->nr_starting > 1;
	}
	if (ev_add(d->loop, &inv->w, fd, EPOLLIN | EPOLLOUT, inv_io, inv)) {
		close(fd);
		inv->fd = -1;
		inv_fail(inv, 503, false, "launcher event set-up failed");
		return;
	}
	d->nr_inflight_socks++;
	fn_reader_free(&inv->rd);
	fn_reader_init(&inv->rd);
	inv->sent = 0;
	/* The request goes out now, not on the next loop turn: the monitor
	 * gives a client only so long to say CONNECT. */
	inv_io(&inv->w, EPOLLOUT);
}

/* Puts inv on inst and starts its stream. */
void inv_run_on(struct invocation *inv, struct instance *inst)
{
	struct fnd *d = inv->d;
	struct function *fn = inst->fn;
	uint8_t seed[16];

	queue_remove(inv);
	ev_timer_cancel(d->loop, &inv->timer);
	inv->inst = inst;
	inv->iprev = NULL;
	inv->inext = inst->invs;
	if (inst->invs)
		inst->invs->iprev = inv;
	inst->invs = inv;
	inst->inflight++;
	fn->nr_inflight++;
	snprintf(inv->inst_name, sizeof(inv->inst_name), "%s", inst->name);
	inv->first_on_clone = inst->state == INST_RESTORING;
	if (inst->first_pending)
		inv->t_spawn = inst->spawn_ns;
	inv->start = inst->first_pending ? inst->kind : START_WARM;
	inst->first_pending = false;
	if (inv->start == START_WARM)
		fn->starts[START_WARM]++;
	inv->t_dispatch = ev_now_ns();
	inst->last_used_ns = inv->t_dispatch;
	if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
		for (size_t i = 0; i < sizeof(seed); i++)
			seed[i] = (uint8_t)(inv->t_dispatch >> (i % 8 * 8)) ^ (uint8_t)i;
	inv->prefix_len = fn_request_prefix(inv->prefix, sizeof(inv->prefix), (uint32_t)inv->body_len,
					    fn->spec.timeout_ms, seed);
	/* A booting instance takes its first invocations once it is ready. */
	if (inst->state == INST_BOOTING)
		return;
	inst_event(d, inst, IEV_INVOKE_BEGIN); /* RESTORING: the first caller rides along */
	if (inst->state == INST_READY && !inst_has_slot(inst)) {
		inst_list_remove(inst);
		inst_list_push(inst, false);
	}
	/* A clone's socket appears only after the jail, the exec and the
	 * restore (~3 ms here): trying at once and backing off from 0.1 ms
	 * took ~6 failed connects and timer wake-ups per start. Wait 3/4 of
	 * what recent clones took at the least, then poll at the usual cap.
	 * Not when this start is alone and that figure was learnt while others
	 * started with it (16 at a time: ~50 ms, ten times a lone start's):
	 * it polls from the start and learns the lone figure. */
	if (inst->state == INST_RESTORING && !inst->wake_pending &&
	    fn->clone_connect_ns > 4 * RETRY_FIRST_NS &&
	    !(fn->nr_starting == 1 && fn->clone_connect_busy)) {
		inv->retries = 3;
		ev_timer_arm(d->loop, &inv->timer, fn->clone_connect_ns / 4 * 3);
		return;
	}
	inv_connect(inv);
}

static void fn_counts(struct function *fn, struct admit_fn *af, struct instance **free_inst)
{
	*free_inst = NULL;
	memset(af, 0, sizeof(*af));
	for (struct instance *inst = fn->insts; inst; inst = inst->next) {
		if (inst->state == INST_STOPPING || inst->state == INST_DRAINING)
			continue;
		af->instances++;
		if (inst->state == INST_BOOTING || inst->state == INST_RESTORING)
			af->starting++;
		if (inst_has_slot(inst)) {
			af->free_slots += fn->spec.concurrency - inst->inflight;
			if (!*free_inst)
				*free_inst = inst;
		}
	}
	af->queued = fn->nr_queued;
	af->concurrency = fn->spec.concurrency;
	af->max_instances = fn->spec.max_instances;
	af->mem_mib = fn->spec.mem_mib;
	af->cpu_profile = fn_cpu_profile(fn);
}

/* Decides for one invocation not queued yet (or the queue's head). */
static void inv_place(struct fnd *d, struct invocation *inv)
{
	struct function *fn = inv->fn;
	struct admit_fn af;
	struct admit_host ah;
	struct instance *free_inst;
	char why[512];

	if (fn->snap == SNAP_BUILDING) {
		/* The template takes the first waiters; clones follow. */
		if (!inv->queued) {
			if (fn->nr_queued >= d->cfg.limits.max_queue) {
				fn->rejected++;
				d->rejected_fn++;
				inv_fail(inv, 429, false,
					 "function %s: its warm snapshot is being built and %u "
					 "invocations are already waiting",
					 fn->spec.name, fn->nr_queued);
				return;
			}
			queue_push(inv);
		}
		return;
	}
	fn_counts(fn, &af, &free_inst);
	if (inv->queued)
		af.queued--; /* itself */
	if (!free_inst)
		free_inst = fn_take_standby(d, fn); /* admitted when it was made */
	if (free_inst) {
		inv_run_on(inv, free_inst);
		return;
	}
	fnd_host_state(d, &ah);
	switch (admit_decide(&d->cfg.limits, &ah, &af, why, sizeof(why))) {
	case ADMIT_RUN: /* no free instance was found above: wait */
	case ADMIT_QUEUE:
		if (!inv->queued)
			queue_push(inv);
		return;
	case ADMIT_FN_FULL:
		fn->rejected++;
		d->rejected_fn++;
		inv_fail(inv, 429, false, "function %s: %s", fn->spec.name, why);
		return;
	case ADMIT_HOST_FULL:
		fn->rejected++;
		d->rejected_host++;
		inv_fail(inv, 503, false, "%s", why);
		return;
	case ADMIT_START:
		break;
	}
	struct instance *inst = inst_start(d, fn, why, sizeof(why));
	if (!inst) {
		if (fn->snap == SNAP_BUILDING && !inv->queued) {
			queue_push(inv);
			return;
		}
		inv_fail(inv, 503, false, "function %s: %s", fn->spec.name, why);
		return;
	}
	inv_run_on(inv, inst);
	fn_fill_standby(d, fn); /* none was there for this start */
}

/* Hands waiting invocations to whatever can take them now. */
void fn_pump(struct fnd *d, struct function *fn)
{
	if (fn->deleted || fn->pumping)
		return;
	fn->pumping = true;
	while (fn->q_head) {
		struct invocation *inv = fn->q_head;
		unsigned before = fn->nr_queued;
		inv_place(d, inv);
		if (fn->nr_queued == before && fn->q_head == inv)
			break; /* it stays queued: so do the ones behind it */
	}
	fn->pumping = false;
}

void fnd_invoke(struct fnd *d, struct invocation *inv)
{
	struct function *fn = inv->fn;

	if (inv->req) {
		inv->req->data = inv;
		inv->req->on_abort = inv_abort;
	}
	if (d->stopping) {
		inv_fail(inv, 503, false, "the launcher is shutting down");
		return;
	}
	if (fn->boot_error[0] && fn->snap != SNAP_READY && !fn->nr_insts &&
	    ev_now_ns() - fn->boot_error_ns < 2000000000ull) {
		/* It failed to boot a moment ago: say so instead of booting it
		 * again for every caller in a burst. */
		inv_fail(inv, 502, false, "%s", fn->boot_error);
		return;
	}
	/* FIFO: a new caller does not overtake the waiting ones. */
	if (fn->q_head) {
		fn_pump(d, fn);
		if (fn->q_head) {
			if (fn->nr_queued >= d->cfg.limits.max_queue) {
				fn->rejected++;
				d->rejected_fn++;
				inv_fail(inv, 429, false,
					 "function %s: %u invocations are already waiting for an "
					 "instance",
					 fn->spec.name, fn->nr_queued);
				return;
			}
			queue_push(inv);
			return;
		}
	}
	inv_place(d, inv);
}

int fnd_start_probe(struct fnd *d, struct function *fn, struct invocation *probe, char *why,
		    size_t whylen)
{
	struct admit_host ah;
	struct instance *standby = fn_take_standby(d, fn);

	if (standby) {
		inv_run_on(probe, standby);
		return 0;
	}
	if (fn->nr_insts >= fn->spec.max_instances) {
		snprintf(why, whylen, "function is at max_instances=%u", fn->spec.max_instances);
		return -1;
	}
	fnd_host_state(d, &ah);
	if (admit_host_room(&d->cfg.limits, &ah, fn->spec.mem_mib, fn_cpu_profile(fn), why, whylen))
		return -1;
	struct instance *inst = inst_start(d, fn, why, whylen);
	if (!inst)
		return -1;
	inv_run_on(probe, inst);
	fn_fill_standby(d, fn);
	return 0;
}

void fnd_probe_instance(struct fnd *d, struct instance *inst, struct invocation *probe)
{
	(void)d;
	inv_run_on(probe, inst);
}
