/* mote-fnd's core: functions, their instances (mote processes) and the
 * invocations passed to them. Everything runs on one thread, driven by
 * launcher/evloop.c; see fnd.h for the model and inst_state.h for an
 * instance's life. */
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

#define GUEST_CID 3
#define VSOCK_NAME "v.sock"
#define READY_NAME "v.sock_53"
#define API_NAME "a.sock"
#define RETRY_FIRST_NS 100000ull      /* connect retry backoff while a VM starts */
#define RETRY_MAX_NS 2000000ull
#define DEADLINE_GRACE_MS 1000u       /* past the runtime's own deadline */
#define API_CALL_TIMEOUT_MS 10000

const uint64_t hist_bounds_us[HIST_BUCKETS] = {
	100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000,
};

void hist_add(struct hist *h, uint64_t us)
{
	size_t i = 0;

	while (i < HIST_BUCKETS && us > hist_bounds_us[i])
		i++;
	h->bucket[i]++;
	h->count++;
	h->sum_us += us;
}

const char *start_kind_name(enum start_kind k)
{
	switch (k) {
	case START_COLD: return "cold-boot";
	case START_RESTORE: return "snapshot-restore";
	case START_WARM: return "warm";
	default: return "?";
	}
}

const char *snap_state_name(enum snap_state s)
{
	switch (s) {
	case SNAP_NONE: return "none";
	case SNAP_BUILDING: return "building";
	case SNAP_READY: return "ready";
	case SNAP_UNAVAILABLE: return "unavailable";
	}
	return "?";
}

static void fn_pump(struct fnd *d, struct function *fn);
static void inst_event(struct fnd *d, struct instance *inst, enum inst_event ev);
static void inv_connect(struct invocation *inv);
static void inv_retry_later(struct invocation *inv);
static void inv_io(struct ev_watch *w, uint32_t events);
static void inv_fail(struct invocation *inv, int status, bool broken, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* ---- host state ------------------------------------------------------------------ */

static uint64_t read_mem_available_mib(void)
{
	char buf[4096];
	int fd = open("/proc/meminfo", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return UINT64_MAX;
	buf[n] = '\0';
	char *p = strstr(buf, "MemAvailable:");
	return p ? strtoull(p + 13, NULL, 10) / 1024 : UINT64_MAX;
}

unsigned fnd_fds_in_use(struct fnd *d)
{
	/* epoll, signalfd, listener, stdio and a few transient ones. */
	return 16 + http_server_nr_conns(d->http) + d->nr_inflight_socks + d->nr_boot_socks;
}

void fnd_host_state(struct fnd *d, struct admit_host *h)
{
	uint64_t now = ev_now_ns();

	if (now - d->free_mib_ns > 100000000ull) {
		d->free_mib = read_mem_available_mib();
		d->free_mib_ns = now;
	}
	h->instances = d->nr_insts;
	h->mem_mib = d->mem_mib_live;
	h->free_mib = d->free_mib;
	h->fds = fnd_fds_in_use(d);
}

/* ---- pid table ------------------------------------------------------------------- */

static size_t pid_slot(struct fnd *d, pid_t pid)
{
	return (size_t)pid % d->pid_hash_size;
}

static void pid_insert(struct fnd *d, struct instance *inst)
{
	size_t s = pid_slot(d, inst->pid);
	inst->hnext = d->pid_hash[s];
	d->pid_hash[s] = inst;
}

static struct instance *pid_take(struct fnd *d, pid_t pid)
{
	for (struct instance **p = &d->pid_hash[pid_slot(d, pid)]; *p; p = &(*p)->hnext) {
		if ((*p)->pid == pid) {
			struct instance *inst = *p;
			*p = inst->hnext;
			return inst;
		}
	}
	return NULL;
}

/* ---- functions ------------------------------------------------------------------- */

struct function *fnd_find(struct fnd *d, const char *name)
{
	for (struct function *fn = d->fns; fn; fn = fn->next)
		if (!strcmp(fn->spec.name, name))
			return fn;
	return NULL;
}

static void fn_free(struct fnd *d, struct function *fn)
{
	(void)d;
	proc_rmtree(fn->dir);
	free(fn);
}

static void inst_list_remove(struct instance *inst)
{
	struct function *fn = inst->fn;

	if (inst->prev)
		inst->prev->next = inst->next;
	else
		fn->insts = inst->next;
	if (inst->next)
		inst->next->prev = inst->prev;
	inst->prev = inst->next = NULL;
}

static void inst_list_push(struct instance *inst, bool front)
{
	struct function *fn = inst->fn;

	if (front || !fn->insts) {
		inst->prev = NULL;
		inst->next = fn->insts;
		if (fn->insts)
			fn->insts->prev = inst;
		fn->insts = inst;
		return;
	}
	struct instance *t = fn->insts;
	while (t->next)
		t = t->next;
	t->next = inst;
	inst->prev = t;
	inst->next = NULL;
}

static bool inst_has_slot(const struct instance *inst)
{
	return inst_state_accepts(inst->state) && inst->inflight < inst->fn->spec.concurrency;
}

/* Stops every instance of fn (they drain what they run). */
static void fn_stop_all(struct fnd *d, struct function *fn)
{
	struct instance *next;

	for (struct instance *inst = fn->insts; inst; inst = next) {
		next = inst->next;
		inst_event(d, inst, IEV_STOP);
	}
}

static void fn_fail_queue(struct fnd *d, struct function *fn, int status, const char *msg)
{
	(void)d;
	while (fn->q_head) {
		struct invocation *inv = fn->q_head;
		inv_fail(inv, status, false, "%s", msg);
	}
}

int fnd_register(struct fnd *d, const struct fn_spec *spec, bool *created, char *err,
		 size_t errlen)
{
	struct file_ident id;
	int ret = file_ident_stat(spec->image, &id);

	if (ret) {
		snprintf(err, errlen, "image '%s': %s", spec->image,
			 ret == -EINVAL ? "not a regular file" : strerror(-ret));
		return -1;
	}
	if (access(spec->image, R_OK)) {
		snprintf(err, errlen, "image '%s' is not readable", spec->image);
		return -1;
	}
	struct function *fn = fnd_find(d, spec->name);
	*created = !fn;
	if (fn) {
		bool vm_changed = strcmp(fn->spec.image, spec->image) ||
				  fn->spec.mem_mib != spec->mem_mib || fn->spec.vcpus != spec->vcpus ||
				  fn->spec.snapshot != spec->snapshot;
		fn->spec = *spec;
		if (vm_changed) {
			/* Another VM: the warm snapshot and the running instances
			 * are of the old one. */
			if (fn->snap != SNAP_BUILDING)
				fn->snap = spec->snapshot ? SNAP_NONE : SNAP_UNAVAILABLE;
			fn->boot_error[0] = '\0';
			fn_stop_all(d, fn);
		}
		return 0;
	}
	fn = calloc(1, sizeof(*fn));
	if (!fn) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	fn->spec = *spec;
	fn->d = d;
	if (!spec->snapshot) {
		fn->snap = SNAP_UNAVAILABLE;
		snprintf(fn->snap_note, sizeof(fn->snap_note), "registered with snapshot: false");
	}
	snprintf(fn->dir, sizeof(fn->dir), "%s/%s", d->fn_dir, spec->name);
	snprintf(fn->snap_state_path, sizeof(fn->snap_state_path), "%s/snap.state", fn->dir);
	snprintf(fn->snap_mem_path, sizeof(fn->snap_mem_path), "%s/snap.mem", fn->dir);
	proc_rmtree(fn->dir);
	if ((ret = proc_mkdirs(fn->dir, 0755))) {
		snprintf(err, errlen, "cannot create '%s': %s", fn->dir, strerror(-ret));
		free(fn);
		return -1;
	}
	fn->next = d->fns;
	d->fns = fn;
	log_info("function %s registered: image %s, %u MiB, %u vCPU, concurrency %u, TTL %u s, "
		 "max %u instances", spec->name, spec->image, spec->mem_mib, spec->vcpus,
		 spec->concurrency, spec->idle_ttl_s, spec->max_instances);
	return 0;
}

void fnd_delete(struct fnd *d, struct function *fn)
{
	for (struct function **p = &d->fns; *p; p = &(*p)->next) {
		if (*p == fn) {
			*p = fn->next;
			break;
		}
	}
	fn->deleted = true;
	fn_fail_queue(d, fn, 404, "the function was deleted");
	fn_stop_all(d, fn);
	if (!fn->nr_insts)
		fn_free(d, fn);
	/* else freed with its last instance */
}

/* ---- instances ------------------------------------------------------------------- */

static void inst_kill(struct instance *inst)
{
	if (inst->pid > 0)
		kill(inst->pid, SIGKILL);
}

static void ready_close(struct fnd *d, struct instance *inst)
{
	if (inst->ready_lw.fd >= 0) {
		char path[FND_INST_DIR_MAX + 16];
		if (snprintf(path, sizeof(path), "%s/%s", inst->dir, READY_NAME) < (int)sizeof(path))
			unlink(path);
	}
	if (inst->ready_cw.fd >= 0) {
		ev_del(d->loop, &inst->ready_cw);
		close(inst->ready_cw.fd);
		inst->ready_cw.fd = -1;
		d->nr_boot_socks--;
	}
	if (inst->ready_lw.fd >= 0) {
		ev_del(d->loop, &inst->ready_lw);
		close(inst->ready_lw.fd);
		inst->ready_lw.fd = -1;
		d->nr_boot_socks--;
	}
}

static void inst_timer_cb(struct ev_timer *t);

static void inst_enter(struct fnd *d, struct instance *inst, enum inst_state next)
{
	enum inst_state prev = inst->state;
	struct function *fn = inst->fn;

	inst->state = next;
	if ((prev == INST_BOOTING || prev == INST_RESTORING) && next != prev)
		fn->nr_starting--;
	if (next == INST_STOPPING && prev != INST_STOPPING) {
		ev_timer_cancel(d->loop, &inst->timer);
		ready_close(d, inst);
		inst_kill(inst);
	}
	if (next == INST_READY && prev != INST_READY) {
		inst->ready_ns = ev_now_ns();
		hist_add(&fn->start_hist[inst->kind == START_RESTORE],
			 (inst->ready_ns - inst->spawn_ns) / 1000);
		ev_timer_cancel(d->loop, &inst->timer);
	}
	if (next == INST_READY) {
		/* Free slots first, so the busiest instances are looked at
		 * last and the idle ones at the back age out. */
		inst_list_remove(inst);
		inst_list_push(inst, inst_has_slot(inst));
		if (inst->inflight == 0) {
			inst->last_used_ns = ev_now_ns();
			ev_timer_arm(d->loop, &inst->timer, (uint64_t)fn->spec.idle_ttl_s * 1000000000ull);
		} else {
			ev_timer_cancel(d->loop, &inst->timer);
		}
	}
}

static void inst_event(struct fnd *d, struct instance *inst, enum inst_event ev)
{
	int next = inst_next_state(inst->state, ev, inst->inflight);

	if (next < 0) {
		log_warn("instance %s: event %d in state %s ignored", inst->name, (int)ev,
			 inst_state_name(inst->state));
		return;
	}
	inst_enter(d, inst, (enum inst_state)next);
}

static void inst_timer_cb(struct ev_timer *t)
{
	struct instance *inst = t->opaque;
	struct fnd *d = inst->fn->d;
	switch (inst->state) {
	case INST_BOOTING:
	case INST_RESTORING:
		snprintf(inst->exit_note, sizeof(inst->exit_note),
			 "did not become ready within %u ms",
			 inst->state == INST_BOOTING ? d->cfg.boot_timeout_ms :
						       d->cfg.restore_timeout_ms);
		inst->failed_start = true;
		inst_event(d, inst, IEV_START_TIMEOUT);
		break;
	case INST_READY:
		log_debug("instance %s idle for %u s: stopping", inst->name, inst->fn->spec.idle_ttl_s);
		inst_event(d, inst, IEV_IDLE_TTL);
		break;
	default:
		break;
	}
}

/* The monitor's argv. Paths inside the VM's world: relative ones resolve
 * in its working directory, which is the instance directory (or the
 * jail's root), so one snapshot's "v.sock" is every clone's own. */
struct argv_buf {
	char *v[64];
	int n;
	char store[8192];
	size_t used;
};

static void arg(struct argv_buf *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void arg(struct argv_buf *a, const char *fmt, ...)
{
	va_list ap;
	char *dst = a->store + a->used;
	size_t room = sizeof(a->store) - a->used;

	if (a->n >= 63 || room < 2)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(dst, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room)
		return;
	a->v[a->n++] = dst;
	a->v[a->n] = NULL;
	a->used += (size_t)n + 1;
}

static void ready_conn_cb(struct ev_watch *w, uint32_t events);

static void ready_accept_cb(struct ev_watch *w, uint32_t events)
{
	struct instance *inst = w->opaque;
	struct fnd *d = inst->fn->d;

	(void)events;
	int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (inst->ready_cw.fd >= 0) {
		close(fd); /* one ready stream is enough */
		return;
	}
	if (ev_add(d->loop, &inst->ready_cw, fd, EPOLLIN, ready_conn_cb, inst)) {
		close(fd);
		return;
	}
	d->nr_boot_socks++;
}

static int ready_listen(struct fnd *d, struct instance *inst)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int n = snprintf(a.sun_path, sizeof(a.sun_path), "%s/%s", inst->dir, READY_NAME);

	if (n < 0 || (size_t)n >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	unlink(a.sun_path);
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) || listen(fd, 4) ||
	    (d->cfg.jail && (chown(a.sun_path, d->cfg.uid, d->cfg.gid) || chmod(a.sun_path, 0600))) ||
	    ev_add(d->loop, &inst->ready_lw, fd, EPOLLIN, ready_accept_cb, inst)) {
		int e = errno;
		close(fd);
		return -e;
	}
	d->nr_boot_socks++;
	return 0;
}

/* A jailed cold boot: the jail's root appears only when the jailer has
 * made it, and the ready listener must be in it before the guest calls. */
static void boot_poll_cb(struct ev_timer *t)
{
	struct instance *inst = t->opaque;
	struct fnd *d = inst->fn->d;
	struct stat st;

	if (inst->state != INST_BOOTING || inst->ready_lw.fd >= 0)
		return;
	if (ev_now_ns() - inst->spawn_ns > (uint64_t)d->cfg.boot_timeout_ms * 1000000ull) {
		inst->timer.cb = inst_timer_cb;
		inst_timer_cb(t);
		return;
	}
	if (stat(inst->dir, &st) == 0 && st.st_uid == d->cfg.uid) {
		int ret = ready_listen(d, inst);
		if (ret) {
			snprintf(inst->exit_note, sizeof(inst->exit_note),
				 "cannot listen for the ready signal: %s", strerror(-ret));
			inst->failed_start = true;
			inst_event(d, inst, IEV_BROKEN);
			return;
		}
		/* From now on the timer is the boot deadline. */
		inst->timer.cb = inst_timer_cb;
		uint64_t spent = ev_now_ns() - inst->spawn_ns;
		uint64_t limit = (uint64_t)d->cfg.boot_timeout_ms * 1000000ull;
		ev_timer_arm(d->loop, &inst->timer, limit > spent ? limit - spent : 0);
		return;
	}
	ev_timer_arm(d->loop, t, 200000);
}

/* Makes the warm snapshot from a template that just said ready: pause,
 * snapshot, resume, over its API socket. Blocking, but it happens once
 * per function and image, and takes milliseconds. */
static void template_snapshot(struct fnd *d, struct instance *inst)
{
	struct function *fn = inst->fn;
	char api[FND_PATH_MAX + 16], body[2 * FND_PATH_MAX + 128], err[512] = "";
	char st_path[FND_PATH_MAX], mem_path[FND_PATH_MAX];
	struct hclient_resp r = { 0 };
	uint64_t t0 = ev_now_ns();
	int ret;

	snprintf(api, sizeof(api), "%s/%s", inst->dir, API_NAME);
	if (d->cfg.jail) {
		strcpy(st_path, "/snap.state");
		strcpy(mem_path, "/snap.mem");
	} else {
		snprintf(st_path, sizeof(st_path), "%s", fn->snap_state_path);
		snprintf(mem_path, sizeof(mem_path), "%s", fn->snap_mem_path);
	}
	ret = hclient_request(api, "PATCH", "/vm", "{\"state\":\"Paused\"}", 18, API_CALL_TIMEOUT_MS,
			      &r, err, sizeof(err));
	if (!ret && r.status != 204)
		snprintf(err, sizeof(err), "pause: %d %s", r.status, r.body), ret = -EIO;
	free(r.body);
	if (!ret) {
		snprintf(body, sizeof(body),
			 "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}",
			 st_path, mem_path);
		ret = hclient_request(api, "PUT", "/snapshot/create", body, strlen(body),
				      API_CALL_TIMEOUT_MS, &r, err, sizeof(err));
		if (!ret && r.status != 204)
			snprintf(err, sizeof(err), "%s", r.body), ret = -EIO;
		free(r.body);
	}
	struct hclient_resp r2 = { 0 };
	char err2[256];
	if (hclient_request(api, "PATCH", "/vm", "{\"state\":\"Resumed\"}", 19, API_CALL_TIMEOUT_MS,
			    &r2, err2, sizeof(err2)) == 0 &&
	    r2.status != 204)
		log_warn("function %s: template %s did not resume: %s", fn->spec.name, inst->name,
			 r2.body);
	free(r2.body);
	if (!ret && d->cfg.jail) {
		/* Out of the jail, owned by root and read-only: clones link it,
		 * and no monitor may change what the others map. */
		char src[FND_PATH_MAX + 16];
		const char *names[2] = { "snap.state", "snap.mem" };
		const char *dst[2] = { fn->snap_state_path, fn->snap_mem_path };
		for (int i = 0; i < 2 && !ret; i++) {
			snprintf(src, sizeof(src), "%s/%s", inst->dir, names[i]);
			if (rename(src, dst[i]) || chown(dst[i], 0, 0) || chmod(dst[i], 0444)) {
				snprintf(err, sizeof(err), "moving %s out of the jail: %s", names[i],
					 strerror(errno));
				ret = -errno;
			}
		}
	}
	if (ret) {
		fn->snap = strstr(err, "not supported") ? SNAP_UNAVAILABLE : SNAP_NONE;
		snprintf(fn->snap_note, sizeof(fn->snap_note), "warm snapshot failed: %.480s", err);
		log_warn("function %s: %s%s", fn->spec.name, fn->snap_note,
			 fn->snap == SNAP_UNAVAILABLE ? " (every start will boot)" : "");
		return;
	}
	file_ident_full(fn->spec.image, &fn->snap_image);
	fn->snap = SNAP_READY;
	fn->snap_note[0] = '\0';
	log_info("function %s: warm snapshot made from %s in %llu us", fn->spec.name, inst->name,
		 (unsigned long long)((ev_now_ns() - t0) / 1000));
}

static void ready_conn_cb(struct ev_watch *w, uint32_t events)
{
	struct instance *inst = w->opaque;
	struct fnd *d = inst->fn->d;
	size_t room = sizeof(inst->ready_buf) - 1 - inst->ready_len;
	ssize_t n = room ? recv(w->fd, inst->ready_buf + inst->ready_len, room, MSG_DONTWAIT) : 0;

	(void)events;
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		inst->ready_len += (size_t)n;
		inst->ready_buf[inst->ready_len] = '\0';
	}
	bool ready = strstr(inst->ready_buf, FN_READY_LINE) != NULL;
	if (!ready && n > 0)
		return;
	/* EOF or garbage without the line: wait for another stream. */
	ev_del(d->loop, &inst->ready_cw);
	close(inst->ready_cw.fd);
	inst->ready_cw.fd = -1;
	d->nr_boot_socks--;
	if (!ready) {
		inst->ready_len = 0;
		return;
	}
	ready_close(d, inst);
	if (inst->is_template)
		template_snapshot(d, inst);
	inst_event(d, inst, IEV_READY);
	/* Invocations that waited for this boot go now. */
	for (struct invocation *inv = inst->invs, *next; inv; inv = next) {
		next = inv->inext;
		if (inv->fd < 0 && !ev_timer_armed(&inv->timer))
			inv_connect(inv);
	}
	fn_pump(d, inst->fn);
}

/* Starts one instance of fn: a clone of the warm snapshot when there is
 * one for the current image, else a cold boot (which makes the snapshot
 * when this mote can). */
static struct instance *inst_start(struct fnd *d, struct function *fn, char *why, size_t whylen)
{
	struct argv_buf a = { .n = 0 };
	bool restore = false, make_template = false;

	if (fn->deleted || d->stopping) {
		snprintf(why, whylen, "%s", d->stopping ? "the launcher is shutting down" :
							  "the function was deleted");
		return NULL;
	}
	if (fn->snap == SNAP_READY) {
		struct file_ident now;
		if (file_ident_stat(fn->spec.image, &now) || !file_ident_same_stat(&now, &fn->snap_image)) {
			if (file_ident_full(fn->spec.image, &now) || now.hash != fn->snap_image.hash) {
				log_info("function %s: image changed; rebuilding its warm snapshot",
					 fn->spec.name);
				fn->snap = SNAP_NONE;
			} else {
				fn->snap_image = now; /* touched, same bytes */
			}
		}
	}
	if (fn->snap == SNAP_READY)
		restore = true;
	else if (fn->snap == SNAP_NONE)
		make_template = true;
	else if (fn->snap == SNAP_BUILDING) {
		snprintf(why, whylen, "the function's warm snapshot is being built");
		return NULL;
	}

	struct instance *inst = calloc(1, sizeof(*inst));
	if (!inst) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	inst->fn = fn;
	inst->id = ++d->next_inst_id;
	inst->kind = restore ? START_RESTORE : START_COLD;
	inst->is_template = make_template;
	inst->first_pending = true;
	inst->ready_lw.fd = inst->ready_cw.fd = -1;
	ev_timer_init(&inst->timer, inst_timer_cb, inst);
	snprintf(inst->name, sizeof(inst->name), "%s-%llu", fn->spec.name,
		 (unsigned long long)inst->id);
	snprintf(inst->log_path, sizeof(inst->log_path), "%s/%s.log", d->log_dir, inst->name);
	if (d->cfg.jail) {
		snprintf(inst->top_dir, sizeof(inst->top_dir) - 8, "%s/mote/%s", d->jail_base,
			 inst->name);
		snprintf(inst->dir, sizeof(inst->dir), "%.130s/root", inst->top_dir);
	} else {
		snprintf(inst->top_dir, sizeof(inst->top_dir), "%s/%s", d->run_dir, inst->name);
		snprintf(inst->dir, sizeof(inst->dir), "%s", inst->top_dir);
		int ret = proc_mkdirs(inst->dir, 0700);
		if (ret) {
			snprintf(why, whylen, "cannot create '%s': %s", inst->dir, strerror(-ret));
			free(inst);
			return NULL;
		}
	}

	if (d->cfg.jail) {
		arg(&a, "%s", d->cfg.jailer_bin);
		arg(&a, "--id");
		arg(&a, "%s", inst->name);
		arg(&a, "--exec-file");
		arg(&a, "%s", d->mote_copy);
		arg(&a, "--uid");
		arg(&a, "%u", (unsigned)d->cfg.uid);
		arg(&a, "--gid");
		arg(&a, "%u", (unsigned)d->cfg.gid);
		arg(&a, "--chroot-base-dir");
		arg(&a, "%s", d->jail_base);
		arg(&a, "--link-exec");
		if (restore) {
			arg(&a, "--copy-in");
			arg(&a, "%s:/snap.state", fn->snap_state_path);
			arg(&a, "--link-in");
			arg(&a, "%s:/snap.mem", fn->snap_mem_path);
		} else {
			arg(&a, "--copy-in");
			arg(&a, "%s:/fn.elf", fn->spec.image);
		}
		arg(&a, "--");
	} else {
		arg(&a, "%s", d->cfg.mote_bin);
	}
	if (restore) {
		arg(&a, "--restore");
		arg(&a, "%s", d->cfg.jail ? "/snap.state" : fn->snap_state_path);
		arg(&a, "--mem");
		arg(&a, "%s", d->cfg.jail ? "/snap.mem" : fn->snap_mem_path);
		arg(&a, "--resume");
		arg(&a, "--no-api");
	} else {
		arg(&a, "--kernel");
		arg(&a, "%s", d->cfg.jail ? "/fn.elf" : fn->spec.image);
		arg(&a, "--mem-mib");
		arg(&a, "%u", fn->spec.mem_mib);
		arg(&a, "--vcpus");
		arg(&a, "%u", fn->spec.vcpus);
		arg(&a, "--vsock");
		arg(&a, "cid=%u,uds=%s", GUEST_CID, VSOCK_NAME);
		if (make_template) {
			arg(&a, "--api-sock");
			arg(&a, "%s", API_NAME);
			arg(&a, "--id");
			arg(&a, "%s", inst->name);
		} else {
			arg(&a, "--no-api");
		}
	}
	arg(&a, "--log-level");
	arg(&a, "%s", d->cfg.mote_log_level);

	/* Unjailed, the ready listener goes up before the monitor starts;
	 * jailed, as soon as the jail's root exists (boot_poll_cb). */
	if (!restore && !d->cfg.jail) {
		int ret = ready_listen(d, inst);
		if (ret) {
			snprintf(why, whylen, "cannot listen for the ready signal in '%s': %s",
				 inst->dir, strerror(-ret));
			proc_rmtree(inst->top_dir);
			free(inst);
			return NULL;
		}
	}
	inst->spawn_ns = ev_now_ns();
	int ret = proc_spawn(a.v, d->cfg.jail ? NULL : inst->dir, inst->log_path, &inst->pid);
	log_debug("instance %s: spawn took %llu us", inst->name,
		  (unsigned long long)((ev_now_ns() - inst->spawn_ns) / 1000));
	if (ret) {
		snprintf(why, whylen, "cannot start %s: %s", a.v[0], strerror(-ret));
		ready_close(d, inst);
		proc_rmtree(inst->top_dir);
		free(inst);
		return NULL;
	}
	inst->state = restore ? INST_RESTORING : INST_BOOTING;
	pid_insert(d, inst);
	inst_list_push(inst, false);
	fn->nr_insts++;
	fn->nr_starting++;
	fn->starts[inst->kind]++;
	d->nr_insts++;
	d->mem_mib_live += fn->spec.mem_mib;
	if (make_template)
		fn->snap = SNAP_BUILDING;
	if (!restore && d->cfg.jail) {
		inst->timer.cb = boot_poll_cb;
		ev_timer_arm(d->loop, &inst->timer, 200000);
	} else {
		ev_timer_arm(d->loop, &inst->timer,
			     (uint64_t)(restore ? d->cfg.restore_timeout_ms : d->cfg.boot_timeout_ms) *
				     1000000ull);
	}
	log_debug("instance %s: %s, pid %d", inst->name, restore ? "restoring" : "booting",
		  (int)inst->pid);
	return inst;
}

static void inst_reaped(struct fnd *d, struct instance *inst, int status)
{
	struct function *fn = inst->fn;
	/* Died while starting, or stopped because it did not start in time. */
	bool never_ready = inst->state == INST_BOOTING || inst->state == INST_RESTORING ||
			   inst->failed_start;
	char how[64];

	if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
	if (never_ready) {
		char tail[600];
		proc_log_tail(inst->log_path, tail, sizeof(tail));
		fn->start_failures++;
		if (!inst->exit_note[0])
			snprintf(inst->exit_note, sizeof(inst->exit_note), "monitor %s", how);
		if (inst->kind == START_COLD) {
			snprintf(fn->boot_error, sizeof(fn->boot_error),
				 "function image did not boot: %s before the runtime said ready "
				 "(monitor log: %s)",
				 inst->exit_note, tail[0] ? tail : "empty");
			fn->boot_error_ns = ev_now_ns();
		} else {
			snprintf(fn->boot_error, sizeof(fn->boot_error),
				 "snapshot clone did not start: %s (monitor log: %s)", inst->exit_note,
				 tail[0] ? tail : "empty");
			/* Rebuild the snapshot on the next start. */
			if (fn->snap == SNAP_READY)
				fn->snap = SNAP_NONE;
		}
		log_warn("instance %s: %s", inst->name, fn->boot_error);
	}
	if (inst->is_template && fn->snap == SNAP_BUILDING)
		fn->snap = SNAP_NONE;
	if (!inst->exit_note[0])
		snprintf(inst->exit_note, sizeof(inst->exit_note), "the VM's monitor %s", how);
	inst_event(d, inst, IEV_EXITED);
	ev_timer_cancel(d->loop, &inst->timer);
	ready_close(d, inst);
	while (inst->invs) {
		struct invocation *inv = inst->invs;
		if (never_ready)
			inv_fail(inv, 502, false, "%s", fn->boot_error);
		else
			inv_fail(inv, 502, false,
				 "instance %s of function %s failed mid-invocation: %s", inst->name,
				 fn->spec.name, inst->exit_note);
	}
	inst_list_remove(inst);
	fn->nr_insts--;
	d->nr_insts--;
	d->mem_mib_live -= fn->spec.mem_mib;
	proc_rmtree(inst->top_dir);
	if (!never_ready && !d->cfg.keep_logs)
		unlink(inst->log_path);
	free(inst);

	/* An image that does not boot fails its waiters instead of being
	 * booted again and again. */
	if (never_ready && fn->boot_error[0] && fn->snap != SNAP_READY)
		fn_fail_queue(d, fn, 502, fn->boot_error);
	if (fn->deleted && !fn->nr_insts)
		fn_free(d, fn);
	else
		fn_pump(d, fn);
	if (d->stopping && !d->nr_insts)
		evloop_stop(d->loop);
}

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
		 "X-Mote-Handler-Us: %u\r\nX-Mote-Total-Us: %llu\r\n",
		 status, inv->t_dispatch ? start_kind_name(inv->start) : "none",
		 (unsigned long long)((disp - inv->t_arrive) / 1000),
		 inv->rd.st == FNR_DONE ? inv->rd.hdr.handler_us : 0,
		 (unsigned long long)((now - inv->t_arrive) / 1000));
}

static void inv_fail(struct invocation *inv, int status, bool broken, const char *fmt, ...)
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

static void inv_io(struct ev_watch *w, uint32_t events)
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
				inv_close_sock(inv);
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

static void inv_retry_later(struct invocation *inv)
{
	uint64_t delay = RETRY_FIRST_NS << (inv->retries < 5 ? inv->retries : 5);

	inv->retries++;
	ev_timer_arm(inv->d->loop, &inv->timer, delay > RETRY_MAX_NS ? RETRY_MAX_NS : delay);
}

static void inv_connect(struct invocation *inv)
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
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		inv_fail(inv, 503, false, "launcher cannot open a socket: %s", strerror(errno));
		return;
	}
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS) {
		int e = errno;
		close(fd);
		if (starting && (e == ENOENT || e == ECONNREFUSED || e == EAGAIN)) {
			/* The clone has not opened its socket yet. The start
			 * deadline (the instance's timer) ends this. */
			inv_retry_later(inv);
			return;
		}
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
static void inv_run_on(struct invocation *inv, struct instance *inst)
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
}

/* Hands waiting invocations to whatever can take them now. */
static void fn_pump(struct fnd *d, struct function *fn)
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

	if (fn->nr_insts >= fn->spec.max_instances) {
		snprintf(why, whylen, "function is at max_instances=%u", fn->spec.max_instances);
		return -1;
	}
	fnd_host_state(d, &ah);
	if (admit_host_room(&d->cfg.limits, &ah, fn->spec.mem_mib, why, whylen))
		return -1;
	struct instance *inst = inst_start(d, fn, why, whylen);
	if (!inst)
		return -1;
	inv_run_on(probe, inst);
	return 0;
}

void fnd_probe_instance(struct fnd *d, struct instance *inst, struct invocation *probe)
{
	(void)d;
	inv_run_on(probe, inst);
}

/* ---- the daemon ------------------------------------------------------------------ */

static void stop_everything(struct fnd *d)
{
	if (d->stopping)
		return;
	d->stopping = true;
	log_info("stopping: %u instances", d->nr_insts);
	while (d->fns)
		fnd_delete(d, d->fns);
	if (!d->nr_insts)
		evloop_stop(d->loop);
}

static void signal_cb(struct ev_watch *w, uint32_t events)
{
	struct fnd *d = w->opaque;
	struct signalfd_siginfo si;

	(void)events;
	while (read(w->fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			stop_everything(d);
			continue;
		}
	}
	/* SIGCHLD coalesces: reap everything that is done. */
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			break;
		struct instance *inst = pid_take(d, pid);
		if (inst)
			inst_reaped(d, inst, status);
	}
}

/* Jailed monitors hard-link the monitor binary and the snapshots'
 * memory files (one page cache copy for all), which needs them on the
 * jails' file system and root-owned: the daemon keeps its own copy of
 * mote in the state directory. */
static int install_monitor(struct fnd *d, char *err, size_t errlen)
{
	char dir[FND_DIR_MAX + 8], tmp[FND_DIR_MAX + 24];
	char buf[65536];
	int in, out, ret = 0;

	snprintf(dir, sizeof(dir), "%s/bin", d->cfg.state_dir);
	snprintf(d->mote_copy, sizeof(d->mote_copy), "%s/mote", dir);
	snprintf(tmp, sizeof(tmp), "%s/.mote.tmp", dir);
	if ((ret = proc_mkdirs(dir, 0755))) {
		snprintf(err, errlen, "cannot create '%s': %s", dir, strerror(-ret));
		return ret;
	}
	in = open(d->cfg.mote_bin, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open '%s': %s", d->cfg.mote_bin, strerror(errno));
		return ret;
	}
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
	if (out < 0) {
		ret = -errno;
		close(in);
		snprintf(err, errlen, "cannot create '%s': %s", tmp, strerror(errno));
		return ret;
	}
	for (;;) {
		ssize_t n = read(in, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = n < 0 ? -errno : 0;
			break;
		}
		if (write(out, buf, (size_t)n) != n) {
			ret = -EIO;
			break;
		}
	}
	if (!ret && (fchown(out, 0, 0) || fchmod(out, 0755)))
		ret = -errno;
	close(in);
	close(out);
	if (!ret && rename(tmp, d->mote_copy))
		ret = -errno;
	if (ret)
		snprintf(err, errlen, "cannot install the monitor in '%s': %s", dir, strerror(-ret));
	return ret;
}

static int make_dir(const char *path, char *err, size_t errlen)
{
	int ret = proc_mkdirs(path, 0755);

	if (ret)
		snprintf(err, errlen, "cannot create '%s': %s", path, strerror(-ret));
	return ret;
}

int fnd_create(struct fnd **out, const struct fnd_config *cfg, char *err, size_t errlen)
{
	struct fnd *d = calloc(1, sizeof(*d));
	int ret;

	if (!d)
		return -ENOMEM;
	d->cfg = *cfg;
	d->sig_w.fd = -1;
	d->started_ns = ev_now_ns();
	if (strlen(cfg->state_dir) > FND_STATE_DIR_MAX || cfg->state_dir[0] != '/') {
		snprintf(err, errlen, "the state directory must be an absolute path of at most %d "
			 "bytes (unix socket paths under it must fit 108 bytes)", FND_STATE_DIR_MAX);
		free(d);
		return -ENAMETOOLONG;
	}
	snprintf(d->run_dir, sizeof(d->run_dir), "%s/run", cfg->state_dir);
	snprintf(d->jail_base, sizeof(d->jail_base), "%s/jail", cfg->state_dir);
	snprintf(d->log_dir, sizeof(d->log_dir), "%s/log", cfg->state_dir);
	snprintf(d->fn_dir, sizeof(d->fn_dir), "%s/fn", cfg->state_dir);
	/* What a previous daemon left is of no use: its monitors are gone
	 * (they die with it) and its snapshots may be of other images. */
	proc_rmtree(d->run_dir);
	proc_rmtree(d->jail_base);
	proc_rmtree(d->fn_dir);
	if ((ret = make_dir(d->run_dir, err, errlen)) || (ret = make_dir(d->log_dir, err, errlen)) ||
	    (ret = make_dir(d->fn_dir, err, errlen)) ||
	    (cfg->jail && (ret = make_dir(d->jail_base, err, errlen))))
		goto fail;
	if (cfg->jail && (ret = install_monitor(d, err, errlen)))
		goto fail;
	d->pid_hash_size = 8191;
	d->pid_hash = calloc(d->pid_hash_size, sizeof(*d->pid_hash));
	d->loop = evloop_new();
	if (!d->pid_hash || !d->loop) {
		ret = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0 || ev_add(d->loop, &d->sig_w, sfd, EPOLLIN, signal_cb, d)) {
		ret = -errno;
		snprintf(err, errlen, "signalfd: %s", strerror(errno));
		goto fail;
	}
	struct http_server_config hc = {
		.sock_path = cfg->sock_path,
		.max_body = FN_MAX_REQUEST,
		.max_conns = cfg->limits.max_fds / 2,
		.handler = fnd_http_handler,
		.opaque = d,
	};
	ret = http_server_open(&d->http, d->loop, &hc, err, errlen);
	if (ret)
		goto fail;
	*out = d;
	return 0;
fail:
	fnd_destroy(d);
	return ret ? ret : -EIO;
}

int fnd_run(struct fnd *d)
{
	log_info("mote-fnd: serving on %s (%s, state in %s, up to %u instances)", d->cfg.sock_path,
		 d->cfg.jail ? "jailed" : "not jailed", d->cfg.state_dir, d->cfg.limits.max_instances);
	int ret = evloop_run(d->loop);
	/* Stopped by a signal: the instances are gone; by an error: make it so. */
	if (d->nr_insts) {
		for (size_t i = 0; i < d->pid_hash_size; i++)
			for (struct instance *inst = d->pid_hash[i]; inst; inst = inst->hnext)
				kill(inst->pid, SIGKILL);
	}
	return ret;
}

void fnd_destroy(struct fnd *d)
{
	if (!d)
		return;
	/* Nothing of a stopped daemon is of use to the next one (which
	 * removes it anyway); only the logs of failed instances stay. */
	if (!d->nr_insts && d->run_dir[0]) {
		char bin[FND_DIR_MAX + 8];
		snprintf(bin, sizeof(bin), "%s/bin", d->cfg.state_dir);
		proc_rmtree(d->run_dir);
		proc_rmtree(d->jail_base);
		proc_rmtree(d->fn_dir);
		proc_rmtree(bin);
	}
	http_server_close(d->http);
	if (d->sig_w.fd >= 0)
		close(d->sig_w.fd);
	evloop_free(d->loop);
	free(d->pid_hash);
	free(d);
}
