/* mote-fnd's core: the daemon (signals, children, state directory), the
 * host's state for admission, and the function registry. Instances live in
 * fnd_inst.c, invocations in fnd_inv.c. Everything runs on one thread,
 * driven by launcher/evloop.c; see fnd.h for the model and inst_state.h
 * for an instance's life. */
#include "launcher/fnd_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
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
	case START_STANDBY: return "snapshot-standby";
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
	h->cpu_demand = d->cpu_demand > 0 ? d->cpu_demand : 0;
}

/* ---- CPU demand of the instances (cpudemand.h) ------------------------------------ */

#define DEMAND_TICK_NS 200000000ull
#define DEMAND_PER_TICK 128 /* ~30 us each here: 2 % of a CPU at most */
/* ... taken 8 at a time, 1 ms apart: 128 in one go held the daemon's loop
 * 4-8 ms every 200 ms with 500 clones live, and the start or invocation
 * whose connect poll, handshake or spawn reply fell in it waited that
 * long (one at a time: ~5 % of the starts, the p99 of 200). */
#define DEMAND_PER_SLICE 8
#define DEMAND_SLICE_NS 1000000ull
/* An instance counts from a second after it was ready: until then it is
 * finishing its start (its first invocation, under a burst of starts on
 * a busy host), which is not what it will demand; counting it made a
 * 16-at-a-time burst of clone starts refuse itself (10 CPUs of "demand"
 * on 2 CPUs, all of it start-up). */
#define DEMAND_SETTLE_NS 1000000000ull

double fn_cpu_profile(const struct function *fn)
{
	return fn->cpu_primed ? fn->cpu_demand / fn->cpu_primed : 0;
}

void fnd_demand_forget(struct fnd *d, struct instance *inst)
{
	if (!inst->cpu.primed)
		return;
	d->cpu_demand -= inst->cpu.cpus;
	inst->fn->cpu_demand -= inst->cpu.cpus;
	inst->fn->cpu_primed--;
	inst->cpu.primed = false;
}

/* A ready instance's vCPUs read once more. Starting ones are left out
 * (DEMAND_SETTLE_NS). */
static void demand_sample(struct fnd *d, struct instance *inst)
{
	struct demand_counters cur[CPUD_MAX_VCPUS];
	struct function *fn = inst->fn;

	if (inst->state != INST_READY || inst->pid <= 0 || inst->cpu.no_tids ||
	    ev_now_ns() - inst->ready_ns < DEMAND_SETTLE_NS)
		return;
	if (!inst->cpu.nr_tids && cpu_demand_find_vcpus(&inst->cpu, inst->pid))
		return;
	if (cpu_demand_read(&inst->cpu, inst->pid, cur))
		return;
	bool was = inst->cpu.primed;
	double old = was ? inst->cpu.cpus : 0;
	if (cpu_demand_feed(&inst->cpu, cur, CPUD_ALPHA))
		return;
	d->cpu_demand += inst->cpu.cpus - old;
	fn->cpu_demand += inst->cpu.cpus - old;
	if (!was)
		fn->cpu_primed++;
}

/* Sums again from the instances' own figures: no drift from the
 * incremental updates. */
static void demand_resum(struct fnd *d)
{
	d->cpu_demand = 0;
	for (struct function *fn = d->fns; fn; fn = fn->next) {
		fn->cpu_demand = 0;
		fn->cpu_primed = 0;
	}
	/* Every live process, deleted functions' too (fnd_demand_forget
	 * takes each out when it dies): their sums are zeroed first. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t s = 0; s < d->pid_hash_size; s++) {
			for (struct instance *i = d->pid_hash[s]; i; i = i->hnext) {
				if (pass == 0) {
					i->fn->cpu_demand = 0;
					i->fn->cpu_primed = 0;
				} else if (i->cpu.primed) {
					i->fn->cpu_demand += i->cpu.cpus;
					i->fn->cpu_primed++;
					d->cpu_demand += i->cpu.cpus;
				}
			}
		}
	}
}

static void demand_tick(struct ev_timer *t)
{
	struct fnd *d = t->opaque;
	unsigned done = 0;
	bool wrapped = false;

	if (!d->demand_done)
		d->demand_round_ns = ev_now_ns();
	while (done < DEMAND_PER_SLICE) {
		for (struct instance *i = d->pid_hash[d->demand_slot]; i; i = i->hnext, done++)
			demand_sample(d, i);
		if (++d->demand_slot == d->pid_hash_size) {
			d->demand_slot = 0;
			demand_resum(d);
			wrapped = true;
			break;
		}
	}
	d->demand_done += done;
	if (!wrapped && d->demand_done < DEMAND_PER_TICK) {
		ev_timer_arm(d->loop, t, DEMAND_SLICE_NS);
		return;
	}
	/* The round is over: the next one DEMAND_TICK_NS after it began. */
	uint64_t took = ev_now_ns() - d->demand_round_ns;
	d->demand_done = 0;
	ev_timer_arm(d->loop, t, took < DEMAND_TICK_NS ? DEMAND_TICK_NS - took : DEMAND_SLICE_NS);
}

/* ---- pid table ------------------------------------------------------------------- */

static size_t pid_slot(struct fnd *d, pid_t pid)
{
	return (size_t)pid % d->pid_hash_size;
}

void pid_insert(struct fnd *d, struct instance *inst)
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

void fn_free(struct fnd *d, struct function *fn)
{
	(void)d;
	proc_rmtree(fn->dir);
	free(fn);
}

/* Stops every instance of fn (they drain what they run). */
void fn_stop_all(struct fnd *d, struct function *fn)
{
	struct instance *next;

	for (struct instance *inst = fn->insts; inst; inst = next) {
		next = inst->next;
		inst_event(d, inst, IEV_STOP);
	}
}

void fn_fail_queue(struct fnd *d, struct function *fn, int status, const char *msg)
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
		} else {
			fn_drop_standby(d, fn, spec->standby);
			fn_fill_standby(d, fn);
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
		else if (d->nr_spawning)
			fnd_early_exit(d, pid, status);
	}
}

/* Jailed monitors hard-link the monitor binary and the snapshots'
 * memory files (one page cache copy for all), which needs them on the
 * jails' file system and root-owned: the daemon keeps its own copy of
 * mote in the state directory. */
static int install_monitor(struct fnd *d, char *err, size_t errlen)
{
	char tmp[FND_DIR_MAX + 24];
	const char *dir = d->bin_dir;
	int in, out, ret = 0;

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
	ret = proc_copy_fd(in, out);
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

/* Jailed, every start makes a jail (directories, device nodes, links)
 * and every stop removes one. On a disk file system that is inode
 * allocation and freeing each time (ext4 here: a jailer run, fork to
 * exit, took 4.3 ms wall and 3.6 ms CPU; on a tmpfs 2.2 ms and 2.0 ms,
 * see benches/results/density.md). The jails, the snapshots they hard-link
 * and the monitor binary must share one file system: all three go on a
 * tmpfs the daemon mounts on <state>/jail. The snapshot's memory file is
 * then held in RAM (not evictable) instead of the page cache: one guest
 * RAM's worth per function. If the mount fails the daemon goes on on
 * disk. */
static void jail_tmpfs_mount(struct fnd *d)
{
	if (mount("mote-fnd", d->jail_base, "tmpfs", MS_NOSUID, "mode=0755")) {
		log_warn("cannot mount a tmpfs on %s (%s): jails stay on its file system",
			 d->jail_base, strerror(errno));
		return;
	}
	d->jail_tmpfs = true;
	snprintf(d->fn_dir, sizeof(d->fn_dir), "%.58s/fn", d->jail_base);
	snprintf(d->bin_dir, sizeof(d->bin_dir), "%.58s/bin", d->jail_base);
	/* The logs too: a file made at every start and removed at every stop
	 * cost the state directory's ext4 ~0.2 ms of CPU per instance (its
	 * inode allocator scans recently deleted inodes; the unlink evicts).
	 * A failed start's log, the one worth keeping, is copied to
	 * <state>/log (inst_reaped). --keep-logs keeps them all there. */
	if (!d->cfg.keep_logs)
		snprintf(d->live_log_dir, sizeof(d->live_log_dir), "%.58s/log", d->jail_base);
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
	d->spawn_w.fd = -1;
	d->null_fd = -1;
	d->spare_sock = -1;
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
	snprintf(d->live_log_dir, sizeof(d->live_log_dir), "%s", d->log_dir);
	snprintf(d->fn_dir, sizeof(d->fn_dir), "%s/fn", cfg->state_dir);
	snprintf(d->bin_dir, sizeof(d->bin_dir), "%s/bin", cfg->state_dir);
	/* What a previous daemon left is of no use: its monitors are gone
	 * (they die with it) and its snapshots may be of other images. A
	 * killed daemon's tmpfs is still mounted. */
	umount2(d->jail_base, MNT_DETACH);
	proc_rmtree(d->run_dir);
	proc_rmtree(d->jail_base);
	proc_rmtree(d->fn_dir);
	proc_rmtree(d->bin_dir);
	/* The logs of the previous daemon's failed instances stay one
	 * generation (log.prev): instance names start again at 1. */
	char prev[FND_DIR_MAX + 8];
	snprintf(prev, sizeof(prev), "%s.prev", d->log_dir);
	proc_rmtree(prev);
	rename(d->log_dir, prev);
	if (cfg->jail && (ret = make_dir(d->jail_base, err, errlen)))
		goto fail;
	if (cfg->jail && !cfg->no_tmpfs)
		jail_tmpfs_mount(d);
	if ((ret = make_dir(d->run_dir, err, errlen)) || (ret = make_dir(d->log_dir, err, errlen)) ||
	    (ret = make_dir(d->live_log_dir, err, errlen)) || (ret = make_dir(d->fn_dir, err, errlen)))
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
	d->null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (d->null_fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open /dev/null: %s", strerror(errno));
		goto fail;
	}
	/* Forked now, while the daemon is small and before it blocks
	 * signals: monitors start from it (spawner.h). Without it every
	 * start vforks here and the loop waits for each exec. */
	ret = spawner_open(&d->spawner);
	if (!ret && ev_add(d->loop, &d->spawn_w, spawner_fd(d->spawner), EPOLLIN, inst_spawner_cb,
			   d))
		ret = -errno;
	if (ret) {
		log_warn("no spawner process (%s): monitors are started by the daemon itself",
			 strerror(-ret));
		spawner_close(d->spawner);
		d->spawner = NULL;
		ret = 0;
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
	ev_timer_init(&d->demand_timer, demand_tick, d);
	ev_timer_arm(d->loop, &d->demand_timer, DEMAND_TICK_NS);
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
		proc_rmtree(d->run_dir);
		proc_rmtree(d->fn_dir);
		proc_rmtree(d->bin_dir);
		if (d->jail_tmpfs)
			umount2(d->jail_base, MNT_DETACH);
		proc_rmtree(d->jail_base);
	}
	http_server_close(d->http);
	if (d->sig_w.fd >= 0)
		close(d->sig_w.fd);
	spawner_close(d->spawner);
	if (d->null_fd >= 0)
		close(d->null_fd);
	if (d->spare_sock >= 0)
		close(d->spare_sock);
	evloop_free(d->loop);
	free(d->pid_hash);
	free(d);
}
