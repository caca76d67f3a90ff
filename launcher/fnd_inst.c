/* mote-fnd's instances: one mote each, started by a cold boot (that may
 * make the function's warm snapshot) or as a clone of that snapshot,
 * watched until ready, stopped on TTL or failure, reaped. See
 * inst_state.h for the states. */
#include "launcher/fnd_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
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

void inst_list_remove(struct instance *inst)
{
	struct function *fn = inst->fn;

	if (inst->prev)
		inst->prev->next = inst->next;
	else
		fn->insts = inst->next;
	if (inst->next)
		inst->next->prev = inst->prev;
	else
		fn->insts_tail = inst->prev;
	inst->prev = inst->next = NULL;
}

void inst_list_push(struct instance *inst, bool front)
{
	struct function *fn = inst->fn;

	if (front || !fn->insts) {
		inst->prev = NULL;
		inst->next = fn->insts;
		if (fn->insts)
			fn->insts->prev = inst;
		else
			fn->insts_tail = inst;
		fn->insts = inst;
		return;
	}
	struct instance *t = fn->insts_tail;
	t->next = inst;
	inst->prev = t;
	inst->next = NULL;
	fn->insts_tail = inst;
}

bool inst_has_slot(const struct instance *inst)
{
	return inst_state_accepts(inst->state) && inst->inflight < inst->fn->spec.concurrency;
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
	if (prev == INST_STANDBY && next != prev) {
		fn->nr_standby--;
		if (next == INST_RESTORING)
			fn->nr_starting++;
	}
	if (next == INST_STOPPING && prev != INST_STOPPING) {
		ev_timer_cancel(d->loop, &inst->timer);
		ready_close(d, inst);
		inst_kill(inst);
	}
	if (next == INST_READY && prev != INST_READY) {
		inst->ready_ns = ev_now_ns();
		hist_add(&fn->start_hist[inst->kind], (inst->ready_ns - inst->spawn_ns) / 1000);
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

void inst_event(struct fnd *d, struct instance *inst, enum inst_event ev)
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
	case INST_STANDBY:
		log_debug("instance %s %s for %u s: stopping", inst->name,
			  inst->state == INST_STANDBY ? "on standby" : "idle",
			  inst->fn->spec.idle_ttl_s);
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

static void inst_boot_ready(struct fnd *d, struct instance *inst);

/* The runtime prints its ready line on the serial console (the monitor's
 * stdout: the instance's log) before it calls port 53; a cold boot is
 * ready when either arrives. The console is what counts when the call
 * came before the listener could (a jailed boot: the jail's root, where
 * the listener goes, appears only once the jailer made it) or when the
 * launcher was busy. */
static bool log_says_ready(struct instance *inst)
{
	char buf[4096];
	int fd = open(inst->log_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	off_t from = inst->log_off > 32 ? inst->log_off - 32 : 0; /* a line split by a read */
	ssize_t n = pread(fd, buf, sizeof(buf) - 1, from);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	inst->log_off = from + n;
	return memmem(buf, (size_t)n, FN_READY_LINE, sizeof(FN_READY_LINE) - 1) != NULL;
}

/* Every cold boot, every millisecond while it boots: the boot deadline,
 * the jailed listener's set-up, the console's ready line. */
static void boot_poll_cb(struct ev_timer *t)
{
	struct instance *inst = t->opaque;
	struct fnd *d = inst->fn->d;
	struct stat st;

	if (inst->state != INST_BOOTING)
		return;
	if (ev_now_ns() - inst->spawn_ns > (uint64_t)d->cfg.boot_timeout_ms * 1000000ull) {
		inst->timer.cb = inst_timer_cb;
		inst_timer_cb(t);
		return;
	}
	if (inst->ready_lw.fd < 0 && stat(inst->dir, &st) == 0 && st.st_uid == d->cfg.uid) {
		int ret = ready_listen(d, inst);
		if (ret) {
			snprintf(inst->exit_note, sizeof(inst->exit_note),
				 "cannot listen for the ready signal: %s", strerror(-ret));
			inst->failed_start = true;
			inst_event(d, inst, IEV_BROKEN);
			return;
		}
	}
	if (log_says_ready(inst)) {
		inst_boot_ready(d, inst);
		return;
	}
	ev_timer_arm(d->loop, t, 1000000);
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
	inst_boot_ready(d, inst);
}

/* The template is snapshotted once its guest is idle, not at its ready
 * signal. The runtime prints its ready line before it calls port 53, and
 * the call and its close are still going on then: paused at once, the
 * guest was caught inside its vsock poll with those packets unread, and
 * every clone resumed there, handled them and a new stream of the
 * launcher's before the transport reset the restore queued, which then
 * dropped that stream (14 of 20 clone starts paid a second handshake).
 * Idle: its vCPU thread ran less than 100 us in each of 3 looks 5 ms
 * apart (it halts when it has nothing to do), at least 20 ms after the
 * signal; at most 500 ms, then it is snapshotted anyway. */
#define SETTLE_LOOK_NS 5000000ull
#define SETTLE_MIN_NS 20000000ull
#define SETTLE_MAX_NS 500000000ull
#define SETTLE_QUIET_RUN_NS 100000ull
#define SETTLE_QUIET_LOOKS 3

static void inst_serve_ready(struct fnd *d, struct instance *inst);

/* Whether the template's vCPUs ran (almost) nothing since the last look. */
static bool template_quiet(struct instance *inst)
{
	struct demand_counters cur[CPUD_MAX_VCPUS];
	uint64_t run = 0;

	if (!inst->cpu.nr_tids && cpu_demand_find_vcpus(&inst->cpu, inst->pid))
		return false;
	if (cpu_demand_read(&inst->cpu, inst->pid, cur))
		return false;
	for (unsigned i = 0; i < inst->cpu.nr_tids; i++)
		run += cur[i].run_ns;
	bool quiet = inst->settle_run_ns && run - inst->settle_run_ns < SETTLE_QUIET_RUN_NS;
	inst->settle_run_ns = run;
	return quiet;
}

static void template_settle_cb(struct ev_timer *t)
{
	struct instance *inst = t->opaque;
	struct fnd *d = inst->fn->d;
	uint64_t waited = ev_now_ns() - inst->ready_signal_ns;

	if (inst->state != INST_BOOTING)
		return;
	inst->settle_quiet = template_quiet(inst) ? inst->settle_quiet + 1 : 0;
	if ((waited < SETTLE_MIN_NS || inst->settle_quiet < SETTLE_QUIET_LOOKS) &&
	    waited < SETTLE_MAX_NS) {
		ev_timer_arm(d->loop, t, SETTLE_LOOK_NS);
		return;
	}
	log_debug("instance %s: template idle %llu us after its ready signal%s", inst->name,
		  (unsigned long long)(waited / 1000),
		  inst->settle_quiet < SETTLE_QUIET_LOOKS ? " (not quiet: snapshotted anyway)" : "");
	inst->timer.cb = inst_timer_cb; /* the idle TTL from now on */
	template_snapshot(d, inst);
	inst_serve_ready(d, inst);
	fn_fill_standby(d, inst->fn);
}

/* A cold boot's runtime said ready: snapshot it if it is the template
 * (once it settled), then serve. */
static void inst_boot_ready(struct fnd *d, struct instance *inst)
{
	ready_close(d, inst);
	ev_timer_cancel(d->loop, &inst->timer);
	if (inst->is_template) {
		inst->ready_signal_ns = ev_now_ns();
		inst->timer.cb = template_settle_cb;
		ev_timer_arm(d->loop, &inst->timer, SETTLE_LOOK_NS);
		return;
	}
	inst->timer.cb = inst_timer_cb; /* the idle TTL from now on */
	inst_serve_ready(d, inst);
}

static void inst_serve_ready(struct fnd *d, struct instance *inst)
{
	inst_event(d, inst, IEV_READY);
	/* Invocations that waited for this boot go now. */
	for (struct invocation *inv = inst->invs, *next; inv; inv = next) {
		next = inv->inext;
		if (inv->fd < 0 && !ev_timer_armed(&inv->timer))
			inv_connect(inv);
	}
	fn_pump(d, inst->fn);
}

/* ---- starting the monitor ------------------------------------------------------ */

/* Hands argv to the spawner (the loop goes on; the pid comes with its
 * reply, inst_spawner_cb), or vforks it here when there is no spawner or
 * its socket is full. */
static int inst_spawn(struct fnd *d, struct instance *inst, char *const argv[], const char *cwd)
{
	if (d->spawner) {
		int ret = spawner_request(d->spawner, inst->id, argv, cwd, inst->log_path, d->null_fd);
		if (ret == 0) {
			inst->spawning = true;
			inst->snext = NULL;
			if (d->spawning_tail)
				d->spawning_tail->snext = inst;
			else
				d->spawning = inst;
			d->spawning_tail = inst;
			d->nr_spawning++;
			return 0;
		}
		if (ret != -EAGAIN && ret != -EPIPE)
			return ret;
		/* Too many requests unread, or the helper died: start it here. */
	}
	int ret = proc_spawn(argv, cwd, inst->log_path, &inst->pid);
	inst->exec_ns = ev_now_ns();
	return ret;
}

/* The spawning instance with this tag (its id): replies come in the order
 * of the requests, so it is almost always the first. */
static struct instance *spawning_take(struct fnd *d, uint64_t tag)
{
	struct instance *prev = NULL;

	for (struct instance *i = d->spawning; i; prev = i, i = i->snext) {
		if (i->id != tag)
			continue;
		if (prev)
			prev->snext = i->snext;
		else
			d->spawning = i->snext;
		if (d->spawning_tail == i)
			d->spawning_tail = prev;
		i->snext = NULL;
		i->spawning = false;
		d->nr_spawning--;
		return i;
	}
	return NULL;
}

void fnd_early_exit(struct fnd *d, pid_t pid, int status)
{
	unsigned n = sizeof(d->early) / sizeof(d->early[0]);

	d->early[d->early_next % n].pid = pid;
	d->early[d->early_next % n].status = status;
	d->early_next++;
}

static bool early_take(struct fnd *d, pid_t pid, int *status)
{
	for (size_t i = 0; i < sizeof(d->early) / sizeof(d->early[0]); i++) {
		if (d->early[i].pid == pid) {
			*status = d->early[i].status;
			d->early[i].pid = 0;
			return true;
		}
	}
	return false;
}

/* The monitor never ran: the instance fails like one that died starting. */
static void inst_spawn_failed(struct fnd *d, struct instance *inst, int err)
{
	snprintf(inst->exit_note, sizeof(inst->exit_note), "cannot start %s: %s",
		 d->cfg.jail ? d->cfg.jailer_bin : d->cfg.mote_bin, strerror(err));
	inst->failed_start = true;
	inst->spawn_failed = true;
	inst->pid = 0;
	inst_reaped(d, inst, 127 << 8);
}

/* The spawner's socket closed (it was killed): the starts it had not
 * answered fail, and from now on the daemon vforks monitors itself. */
static void spawner_gone(struct fnd *d)
{
	log_warn("the spawner process is gone: %u starts in progress fail; the daemon starts "
		 "monitors itself from now on", d->nr_spawning);
	ev_del(d->loop, &d->spawn_w);
	spawner_close(d->spawner);
	d->spawner = NULL;
	while (d->spawning) {
		struct instance *inst = spawning_take(d, d->spawning->id);
		inst_spawn_failed(d, inst, EPIPE);
	}
}

/* A standby clone is made on CPU time nothing else wants (SCHED_IDLE, set
 * as soon as its pid is known: the jail and the restore are ahead of it,
 * and its vCPU thread inherits it), so making the next one does not slow
 * the start that just took one (2 CPUs here: the taken clone's guest on
 * one, the launcher and its client on the other). Taken, it is put back
 * to normal, twice: at the take, and when it is told to run (threads its
 * restore made meanwhile). */
void standby_sched(struct instance *inst, bool idle)
{
	if (inst->pid <= 0)
		return;
	int ret = proc_sched_all(inst->pid, idle ? SCHED_IDLE : SCHED_OTHER);
	if (ret == -EPERM && idle)
		log_debug("instance %s: made at normal priority (no CAP_SYS_NICE to undo "
			  "SCHED_IDLE)", inst->name);
	else if (ret && ret != -ESRCH)
		log_warn("instance %s: cannot set its scheduling policy to %s: %s", inst->name,
			 idle ? "SCHED_IDLE" : "SCHED_OTHER", strerror(-ret));
}

/* A taken standby runs once its socket has answered (wake_ready) and its
 * pid is known: the spawner's reply may come after the first connect, and
 * a signal to pid 0 would go to the daemon's whole process group. */
void inst_wake(struct instance *inst)
{
	if (!inst->wake_pending || !inst->wake_ready || inst->pid <= 0 ||
	    inst->state != INST_RESTORING)
		return;
	inst->wake_pending = false;
	standby_sched(inst, false);
	if (kill(inst->pid, SIGUSR2))
		log_warn("instance %s: cannot wake it from standby: %s", inst->name,
			 strerror(errno));
}

/* The spawner answered: who was started (its pid), or why not. */
void inst_spawner_cb(struct ev_watch *w, uint32_t events)
{
	struct fnd *d = w->opaque;

	(void)events;
	for (;;) {
		uint64_t tag;
		pid_t pid;
		int err, status, r = spawner_reply(d->spawner, &tag, &pid, &err);

		if (r == 0)
			return;
		if (r < 0) {
			spawner_gone(d);
			return;
		}
		struct instance *inst = spawning_take(d, tag);
		bool exited = pid > 0 && early_take(d, pid, &status);
		if (!inst) {
			if (pid > 0 && !exited)
				kill(pid, SIGKILL); /* nobody's: not to run unwatched */
			continue;
		}
		inst->exec_ns = ev_now_ns();
		if (err || pid <= 0) {
			inst_spawn_failed(d, inst, err ? err : EIO);
			continue;
		}
		inst->pid = pid;
		if (exited) {
			/* Gone before we knew its pid: as if reaped now. */
			inst_reaped(d, inst, status);
			continue;
		}
		pid_insert(d, inst);
		log_debug("instance %s: pid %d, exec %llu us after the request", inst->name, (int)pid,
			  (unsigned long long)((inst->exec_ns - inst->spawn_ns) / 1000));
		if (inst->state == INST_STANDBY)
			standby_sched(inst, true);
		inst_wake(inst); /* taken, and its socket answered, before this reply */
		/* Stopped while it was being started. */
		if (inst->state == INST_STOPPING)
			kill(pid, SIGKILL);
	}
}

/* A warm snapshot whose image changed (other bytes, not just touched) is
 * dropped, with the standby clones made from it: the next start boots the
 * new image. Asked at every start, a standby's take included. */
static void fn_check_image(struct fnd *d, struct function *fn)
{
	struct file_ident now;

	if (fn->snap != SNAP_READY)
		return;
	if (!file_ident_stat(fn->spec.image, &now) && file_ident_same_stat(&now, &fn->snap_image))
		return;
	if (file_ident_full(fn->spec.image, &now) || now.hash != fn->snap_image.hash) {
		log_info("function %s: image changed; rebuilding its warm snapshot", fn->spec.name);
		fn->snap = SNAP_NONE;
		fn_drop_standby(d, fn, 0);
	} else {
		fn->snap_image = now; /* touched, same bytes */
	}
}

/* Starts one instance of fn: a clone of the warm snapshot when there is
 * one for the current image, else a cold boot (which makes the snapshot
 * when this mote can). standby: a clone that stays paused until taken
 * (only when the snapshot is ready; NULL otherwise). */
static struct instance *inst_launch(struct fnd *d, struct function *fn, bool standby, char *why,
				    size_t whylen)
{
	struct argv_buf a = { .n = 0 };
	bool restore = false, make_template = false;

	if (fn->deleted || d->stopping) {
		snprintf(why, whylen, "%s", d->stopping ? "the launcher is shutting down" :
							  "the function was deleted");
		return NULL;
	}
	fn_check_image(d, fn);
	if (fn->snap == SNAP_READY)
		restore = true;
	else if (standby) {
		snprintf(why, whylen, "no warm snapshot to restore a standby clone from");
		return NULL;
	} else if (fn->snap == SNAP_NONE)
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
	inst->kind = standby ? START_STANDBY : restore ? START_RESTORE : START_COLD;
	inst->is_template = make_template;
	inst->first_pending = true;
	inst->ready_lw.fd = inst->ready_cw.fd = -1;
	ev_timer_init(&inst->timer, inst_timer_cb, inst);
	snprintf(inst->name, sizeof(inst->name), "%s-%llu", fn->spec.name,
		 (unsigned long long)inst->id);
	snprintf(inst->log_path, sizeof(inst->log_path), "%s/%s.log", d->live_log_dir, inst->name);
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
		if (!d->cfg.pivot_root)
			arg(&a, "--move-root");
		if (restore) {
			/* Both root-owned and read-only (template_snapshot): linked,
			 * not copied, so a start writes nothing but the jail's
			 * directories and device nodes. */
			arg(&a, "--link-in");
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
		arg(&a, "%s", standby ? "--standby" : "--resume");
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
	int ret = inst_spawn(d, inst, a.v, d->cfg.jail ? NULL : inst->dir);
	inst->loop_ns = ev_now_ns() - inst->spawn_ns;
	log_debug("instance %s: %s in %llu us", inst->name,
		  inst->spawning ? "spawn requested" : "spawned",
		  (unsigned long long)(inst->loop_ns / 1000));
	if (ret) {
		snprintf(why, whylen, "cannot start %s: %s", a.v[0], strerror(-ret));
		ready_close(d, inst);
		proc_rmtree(inst->top_dir);
		free(inst);
		return NULL;
	}
	inst->state = standby ? INST_STANDBY : restore ? INST_RESTORING : INST_BOOTING;
	if (!inst->spawning)
		pid_insert(d, inst);
	if (standby && !inst->spawning)
		standby_sched(inst, true);
	inst_list_push(inst, false);
	fn->nr_insts++;
	if (standby) {
		fn->nr_standby++; /* a start, and counted as one, when taken */
	} else {
		fn->nr_starting++;
		fn->starts[inst->kind]++;
	}
	d->nr_insts++;
	d->mem_mib_live += fn->spec.mem_mib;
	if (make_template)
		fn->snap = SNAP_BUILDING;
	if (!restore) {
		inst->timer.cb = boot_poll_cb;
		ev_timer_arm(d->loop, &inst->timer, 200000);
	} else if (standby) {
		/* Unused for the idle TTL: gone, like an idle instance. */
		ev_timer_arm(d->loop, &inst->timer, (uint64_t)fn->spec.idle_ttl_s * 1000000000ull);
	} else {
		ev_timer_arm(d->loop, &inst->timer,
			     (uint64_t)(restore ? d->cfg.restore_timeout_ms : d->cfg.boot_timeout_ms) *
				     1000000ull);
	}
	log_debug("instance %s: %s, pid %d", inst->name,
		  standby ? "restoring to stand by" : restore ? "restoring" : "booting", (int)inst->pid);
	return inst;
}

struct instance *inst_start(struct fnd *d, struct function *fn, char *why, size_t whylen)
{
	return inst_launch(d, fn, false, why, whylen);
}

/* Keeps spec.standby clones restored and paused while the function has a
 * warm snapshot: called when the snapshot is made and whenever a start
 * takes one. Each counts as an instance (max_instances, the host's
 * instance and memory caps), so one is made only when a start could be. */
void fn_fill_standby(struct fnd *d, struct function *fn)
{
	struct admit_host ah;
	char why[256];

	while (fn->nr_standby < fn->spec.standby && fn->snap == SNAP_READY && !fn->deleted &&
	       !d->stopping && fn->nr_insts < fn->spec.max_instances) {
		fnd_host_state(d, &ah);
		if (admit_host_room(&d->cfg.limits, &ah, fn->spec.mem_mib, fn_cpu_profile(fn), why,
				    sizeof(why)))
			return; /* the host is full: real starts come first */
		if (!inst_launch(d, fn, true, why, sizeof(why))) {
			log_warn("function %s: cannot start a standby clone: %s", fn->spec.name, why);
			return;
		}
	}
}

/* A start takes a standby clone: from now on it is a restoring clone whose
 * first stream tells its monitor to run (inv_connect). Then another is
 * made to take its place. NULL when there is none. */
struct instance *fn_take_standby(struct fnd *d, struct function *fn)
{
	struct instance *inst = fn->insts;

	if (!fn->nr_standby)
		return NULL;
	fn_check_image(d, fn); /* a changed image drops them all */
	if (!fn->nr_standby)
		return NULL;
	while (inst && inst->state != INST_STANDBY)
		inst = inst->next;
	if (!inst)
		return NULL;
	inst_event(d, inst, IEV_TAKEN);
	standby_sched(inst, false);
	inst->spawn_ns = ev_now_ns();
	if (!inst->spawning)
		inst->exec_ns = inst->spawn_ns; /* its start's spawn and exec phases: none */
	inst->wake_pending = true;
	inst->first_pending = true;
	fn->starts[START_STANDBY]++;
	ev_timer_arm(d->loop, &inst->timer, (uint64_t)d->cfg.restore_timeout_ms * 1000000ull);
	log_debug("instance %s: taken from standby", inst->name);
	fn_fill_standby(d, fn);
	return inst;
}

/* Stops standby clones beyond keep: 0 when the warm snapshot is going
 * (image changed, a clone failed) and none of them may serve, the spec's
 * figure when it was lowered. */
void fn_drop_standby(struct fnd *d, struct function *fn, unsigned keep)
{
	for (struct instance *inst = fn->insts; inst && fn->nr_standby > keep; inst = inst->next)
		if (inst->state == INST_STANDBY)
			inst_event(d, inst, IEV_STOP);
}

/* A failed start's log, from the tmpfs to <state>/log, where it outlives
 * the daemon (one generation: log.prev). */
static void keep_log(struct fnd *d, struct instance *inst)
{
	char dst[FND_DIR_MAX + FN_NAME_MAX + 32];
	int in = open(inst->log_path, O_RDONLY | O_CLOEXEC), out = -1;
	int err = 0;

	snprintf(dst, sizeof(dst), "%s/%s.log", d->log_dir, inst->name);
	if (in < 0)
		err = errno;
	else if ((out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) < 0)
		err = errno;
	else
		err = -proc_copy_fd(in, out);
	if (err)
		log_warn("instance %s: its log stays at %s (copy to %s failed: %s)", inst->name,
			 inst->log_path, dst, strerror(err));
	else
		unlink(inst->log_path);
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
}

void inst_reaped(struct fnd *d, struct instance *inst, int status)
{
	struct function *fn = inst->fn;
	/* Died while starting, or stopped because it did not start in time. */
	bool never_ready = inst->state == INST_BOOTING || inst->state == INST_RESTORING ||
			   inst->state == INST_STANDBY || inst->failed_start;
	char how[64];
	bool drop_standby = false;

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
			/* Rebuild the snapshot on the next start (not when the
			 * monitor never ran: the snapshot is not to blame). */
			if (fn->snap == SNAP_READY && !inst->spawn_failed) {
				fn->snap = SNAP_NONE;
				drop_standby = true; /* once this one is out of the way */
			}
		}
		log_warn("instance %s: %s", inst->name, fn->boot_error);
	}
	if (inst->is_template && fn->snap == SNAP_BUILDING)
		fn->snap = SNAP_NONE;
	if (!inst->exit_note[0])
		snprintf(inst->exit_note, sizeof(inst->exit_note), "the VM's monitor %s", how);
	inst_event(d, inst, IEV_EXITED);
	if (drop_standby)
		fn_drop_standby(d, fn, 0);
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
	fnd_demand_forget(d, inst);
	fn->nr_insts--;
	d->nr_insts--;
	d->mem_mib_live -= fn->spec.mem_mib;
	proc_rmtree(inst->top_dir);
	if (never_ready && strcmp(d->live_log_dir, d->log_dir))
		keep_log(d, inst);
	else if (!never_ready && !d->cfg.keep_logs)
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
