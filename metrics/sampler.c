/* The VMM side of the demand metrics: sources opened at boot, a timerfd
 * in the event loop, the estimators fed on each tick, JSON on request.
 * Runs on the VMM thread only; see metrics.h. */
#include "metrics/metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "metrics/demand.h"
#include "metrics/sources.h"
#include "metrics/wss.h"
#include "vmm/dirty_log.h"
#include "vmm/log.h"
#include "vmm/loop.h"
#include "vmm/vm.h"

#define STATS_SCRATCH 4096
#define MAPS_MAX (1 << 20)
/* A restored clone's sample is armed with the vCPUs parked; give up (and
 * retry at the next tick) if they take longer than this to park. */
#define WSS_PAUSE_TIMEOUT_MS 100

struct vcpu_metrics {
	struct demand_vcpu est;
	int stats_fd;                  /* KVM_GET_STATS_FD, -1 if unavailable */
	uint64_t kstat[KSTAT_NR];      /* latest values */
	uint64_t kstat_prev[KSTAT_NR]; /* at the previous tick */
	uint64_t halt_wait_last_ns;    /* KVM's own halt-wait time in the last interval */
	bool seen;                     /* schedstat read at least once */
};

struct vm_metrics {
	struct vm *vm;
	struct metrics_config cfg;
	int timer_fd;
	int pagemap_fd;
	bool halt_poll_off;            /* KVM_CAP_HALT_POLL accepted max 0 */
	struct kvm_stats_layout layout;
	bool have_layout;
	uint64_t scratch[STATS_SCRATCH / 8];
	uint64_t nr_ticks;
	uint64_t last_tick_ns;
	unsigned wss_every;            /* ticks per working-set interval */
	struct wss wss;
	bool wss_on;
	/* A restored clone: private guest RAM, KVM's dirty log for the pages
	 * it wrote (wss.h); `written` is this consumer's bitmap. */
	bool wss_private;
	uint64_t *written;
	uint64_t wss_pause_ns;         /* vCPUs parked for the last arm */
	uint64_t wss_deferred;         /* arms put off: device I/O in flight, or no park */
	char wss_why[96];              /* why it is off */
	struct wss_result wss_last;
	bool wss_have;
	metrics_tick_fn tick;
	void *tick_opaque;
	struct vcpu_metrics vcpu[VM_MAX_VCPUS];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Reads all of /proc/self/maps (before the lock-down) to check that the
 * guest RAM mapping is MAP_SHARED: zapping a private mapping's pages
 * would lose what the guest wrote there. */
static int guest_ram_is_shared(const struct vm *vm)
{
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	char *buf;
	size_t len = 0;
	ssize_t n;
	int ret;

	if (fd < 0)
		return -errno;
	buf = malloc(MAPS_MAX);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while (len < MAPS_MAX && (n = read(fd, buf + len, MAPS_MAX - len)) > 0)
		len += (size_t)n;
	close(fd);
	ret = maps_mapping_is_shared(buf, len, (uintptr_t)vm->mem.base);
	free(buf);
	return ret;
}

static void wss_setup(struct vm_metrics *m)
{
	struct vm *vm = m->vm;
	int ret;

	if (m->cfg.wss_off) {
		snprintf(m->wss_why, sizeof(m->wss_why), "off (--wss-off)");
		return;
	}
	ret = guest_ram_is_shared(vm);
	if (ret < 0) {
		snprintf(m->wss_why, sizeof(m->wss_why),
			 "off: guest RAM not found in /proc/self/maps");
		return;
	}
	if (ret == 0) {
		/* A restored clone: RAM is the snapshot file mapped private.
		 * Pages it wrote are its only copy; KVM's dirty log tells
		 * whether it wrote them again. The log costs a write fault per
		 * page and interval, so it is asked for (or already on). */
		if (!vm->cfg.track_dirty_pages && !m->cfg.wss_dirty_log) {
			snprintf(m->wss_why, sizeof(m->wss_why),
				 "off: private guest RAM (a clone) needs the dirty log: "
				 "wss=dirty-log");
			return;
		}
		if (!vm->cfg.track_dirty_pages && (ret = dirty_log_enable(vm)) != 0) {
			snprintf(m->wss_why, sizeof(m->wss_why), "off: KVM dirty log: %s",
				 strerror(-ret));
			return;
		}
		m->written = calloc(dirty_log_words(vm->mem.size), sizeof(uint64_t));
		if (!m->written) {
			snprintf(m->wss_why, sizeof(m->wss_why), "off: out of memory");
			return;
		}
		m->wss_private = true;
	}
	m->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (m->pagemap_fd < 0) {
		snprintf(m->wss_why, sizeof(m->wss_why), "off: /proc/self/pagemap: %s",
			 strerror(errno));
		return;
	}
	struct wss_config wc = {
		.sample_pages = m->cfg.wss_sample_pages == UINT64_MAX ? 0 : m->cfg.wss_sample_pages,
		.seed = mono_ns(),
		.private_map = m->wss_private,
	};
	/* Not armed here: the first tick's wss_collect() arms the first
	 * interval, so zapping guest pages never delays the first KVM_RUN. */
	ret = wss_init(&m->wss, vm->mem.base, vm->mem.size, &wc, m->pagemap_fd);
	if (ret) {
		snprintf(m->wss_why, sizeof(m->wss_why), "off: %s", strerror(-ret));
		return;
	}
	m->wss_on = true;
}

static void sample_vcpu(struct vm_metrics *m, unsigned i, uint64_t now)
{
	struct vcpu_metrics *vm_ = &m->vcpu[i];
	struct vcpu *v = &m->vm->vcpus[i];
	struct demand_counters c = { .t_ns = now };
	int fd = atomic_load_explicit(&v->schedstat_fd, memory_order_acquire);

	if (m->have_layout && vm_->stats_fd >= 0) {
		memcpy(vm_->kstat_prev, vm_->kstat, sizeof(vm_->kstat));
		if (kvm_stats_read(vm_->stats_fd, &m->layout, m->scratch, sizeof(m->scratch),
				   vm_->kstat) == 0) {
			c.poll_ns = vm_->kstat[KSTAT_HALT_POLL_SUCCESS_NS] +
				    vm_->kstat[KSTAT_HALT_POLL_FAIL_NS];
			vm_->halt_wait_last_ns = vm_->kstat[KSTAT_HALT_WAIT_NS] -
						 vm_->kstat_prev[KSTAT_HALT_WAIT_NS];
		}
	}
	/* A vCPU whose thread has not opened its schedstat yet has not run:
	 * all zero counters, so its first intervals are all Wait. */
	if (fd >= 0 && schedstat_read(fd, &c.run_ns, &c.ready_ns) == 0)
		vm_->seen = true;
	demand_vcpu_update(&vm_->est, &c);
}

static void wss_stop(struct vm_metrics *m, const char *what, int err)
{
	log_warn("working-set sampling stopped: %s: %s", what, strerror(-err));
	snprintf(m->wss_why, sizeof(m->wss_why), "off: %s: %s", what, strerror(-err));
	m->wss_on = false;
}

static bool blk_io_in_flight(const struct vm *vm)
{
	for (unsigned d = 0; d < vm->cfg.nr_drives; d++)
		if (vm->blk[d] && virtio_blk_inflight(vm->blk[d]))
			return true;
	return false;
}

/* A restored clone's interval: the count needs nothing stopped (pagemap
 * and the dirty log are read, nothing is zapped); the arm checks each
 * sample page and zaps the file-backed ones, and a write between the two
 * would be lost, so it runs with every writer of guest RAM stopped: the
 * vCPUs parked (unless the VM is paused already), no block request in
 * flight (io_uring may copy into guest RAM from another context; the
 * VMM thread, which runs this, is the only other writer). */
static void wss_private_step(struct vm_metrics *m, bool due)
{
	struct vm *vm = m->vm;
	struct wss_result r;
	bool parked_here = false;
	int ret;

	if (due && m->wss.armed) {
		ret = dirty_log_take(vm, DIRTY_LOG_METRICS, m->written);
		if (ret) {
			wss_stop(m, "KVM_GET_DIRTY_LOG", ret);
			return;
		}
		ret = wss_count(&m->wss, m->written, &r);
		if (ret) {
			wss_stop(m, "pagemap", ret);
			return;
		}
		m->wss_last = r;
		m->wss_have = true;
	}
	if (m->wss.armed)
		return;
	/* Classify the samples first, with the guest running: parked, only
	 * the file-backed ones are looked at again and zapped. */
	ret = wss_arm_prepare(&m->wss);
	if (ret) {
		wss_stop(m, "pagemap", ret);
		return;
	}
	uint64_t t0 = mono_ns();
	if (!atomic_load(&vm->pause_requested)) {
		if (vm_pause(vm, WSS_PAUSE_TIMEOUT_MS)) {
			m->wss_deferred++;
			return;
		}
		parked_here = true;
	}
	if (blk_io_in_flight(vm)) {
		m->wss_deferred++;
	} else {
		/* The interval starts now: writes before it do not count. */
		ret = dirty_log_take(vm, DIRTY_LOG_METRICS, m->written);
		if (!ret)
			ret = wss_arm(&m->wss);
		if (ret)
			wss_stop(m, "arming", ret);
	}
	if (parked_here)
		vm_resume(vm);
	m->wss_pause_ns = parked_here ? mono_ns() - t0 : 0;
}

void vm_metrics_sample(struct vm_metrics *m)
{
	uint64_t now = mono_ns();

	for (unsigned i = 0; i < m->vm->nr_vcpus; i++)
		sample_vcpu(m, i, now);
	m->nr_ticks++;
	m->last_tick_ns = now;
	if (m->wss_on && m->wss_private) {
		/* An arm put off is retried at every tick. */
		bool due = m->nr_ticks % m->wss_every == 0;
		if (due || !m->wss.armed)
			wss_private_step(m, due);
	} else if (m->wss_on && m->nr_ticks % m->wss_every == 0) {
		struct wss_result r;
		int ret = wss_collect(&m->wss, &r);
		if (ret == 0) {
			m->wss_last = r;
			m->wss_have = true;
		} else if (ret != -EAGAIN) {
			log_warn("working-set sampling stopped: %s", strerror(-ret));
			snprintf(m->wss_why, sizeof(m->wss_why), "off: %s", strerror(-ret));
			m->wss_on = false;
		}
	}
}

static void on_timer(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct vm_metrics *m = opaque;
	uint64_t expirations;

	(void)loop;
	(void)events;
	if (read(fd, &expirations, sizeof(expirations)) < 0)
		return;
	vm_metrics_sample(m);
	if (m->tick)
		m->tick(m->tick_opaque);
}

static void halt_poll_off(struct vm_metrics *m)
{
	/* Polling spins inside KVM_RUN before the thread sleeps, so it would
	 * show as Used. Off for this VM only; the host's default stays. */
	int ret = vm_halt_poll_off(m->vm);

	m->halt_poll_off = ret == 0;
	if (ret)
		log_info("KVM halt polling stays on (KVM_CAP_HALT_POLL: %s): its time is "
			 "subtracted from Used", ret == -EOPNOTSUPP ? "not offered" : strerror(-ret));
}

int vm_metrics_create(struct vm_metrics **out, struct vm *vm, struct event_loop *loop,
		      const struct metrics_config *cfg, metrics_tick_fn tick, void *opaque)
{
	struct vm_metrics *m = calloc(1, sizeof(*m));
	char err[160];
	int ret;

	if (!m)
		return -ENOMEM;
	m->vm = vm;
	m->cfg = *cfg;
	m->timer_fd = -1;
	m->pagemap_fd = -1;
	m->tick = tick;
	m->tick_opaque = opaque;
	ret = metrics_config_finish(&m->cfg, err, sizeof(err));
	if (ret) {
		log_error("metrics: %s", err);
		free(m);
		return ret;
	}
	m->wss_every = m->cfg.wss_period_ms / m->cfg.period_ms;
	halt_poll_off(m);
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu_metrics *vm_ = &m->vcpu[i];
		demand_vcpu_init(&vm_->est, m->cfg.window, m->cfg.alpha);
		/* Taken when the vCPU was made (vcpu_init): asking now, with
		 * the vCPU running, would wait for it to leave hlt. */
		vm_->stats_fd = vm->vcpus[i].stats_fd;
		vm->vcpus[i].stats_fd = -1;
		if (vm_->stats_fd < 0)
			continue;
		if (!m->have_layout) {
			ret = kvm_stats_load_layout(vm_->stats_fd, &m->layout);
			m->have_layout = ret == 0 && m->layout.data_size <= STATS_SCRATCH;
			if (!m->have_layout)
				log_info("KVM statistics unusable: exits by reason not reported");
		}
	}
	wss_setup(m);
	m->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (m->timer_fd < 0) {
		ret = -errno;
		goto fail;
	}
	struct itimerspec its = {
		.it_interval = { .tv_sec = m->cfg.period_ms / 1000,
				 .tv_nsec = (long)(m->cfg.period_ms % 1000) * 1000000L },
	};
	its.it_value = its.it_interval;
	if (timerfd_settime(m->timer_fd, 0, &its, NULL) < 0) {
		ret = -errno;
		goto fail;
	}
	ret = loop_add(loop, m->timer_fd, EPOLLIN, on_timer, m);
	if (ret)
		goto fail;
	/* The baseline: CPU counters only (cheap), no working-set work. */
	uint64_t now = mono_ns();
	for (unsigned i = 0; i < vm->nr_vcpus; i++)
		sample_vcpu(m, i, now);
	m->last_tick_ns = now;
	*out = m;
	return 0;
fail:
	log_error("metrics: cannot set up the sampling timer: %s", strerror(-ret));
	if (m->timer_fd >= 0)
		close(m->timer_fd);
	m->timer_fd = -1;
	vm_metrics_destroy(m, NULL);
	return ret;
}

int vm_metrics_set_sampling(struct vm_metrics *m, bool on)
{
	struct itimerspec its = { 0 };

	if (on) {
		its.it_interval.tv_sec = m->cfg.period_ms / 1000;
		its.it_interval.tv_nsec = (long)(m->cfg.period_ms % 1000) * 1000000L;
		its.it_value = its.it_interval;
		/* A new baseline: the time spent off is no interval of the
		 * guest's (a standby of minutes would be one long idle sample). */
		uint64_t now = mono_ns();
		for (unsigned i = 0; i < m->vm->nr_vcpus; i++) {
			m->vcpu[i].est.have_prev = false;
			sample_vcpu(m, i, now);
		}
		m->last_tick_ns = now;
	}
	return timerfd_settime(m->timer_fd, 0, &its, NULL) < 0 ? -errno : 0;
}

void vm_metrics_destroy(struct vm_metrics *m, struct event_loop *loop)
{
	if (!m)
		return;
	if (m->timer_fd >= 0) {
		if (loop)
			loop_remove(loop, m->timer_fd);
		close(m->timer_fd);
	}
	for (unsigned i = 0; i < m->vm->nr_vcpus; i++) {
		if (m->vcpu[i].stats_fd >= 0)
			close(m->vcpu[i].stats_fd);
		int fd = atomic_exchange(&m->vm->vcpus[i].schedstat_fd, -1);
		if (fd >= 0)
			close(fd);
	}
	if (m->wss_on || m->wss.pm_buf)
		wss_destroy(&m->wss);
	free(m->written);
	if (m->pagemap_fd >= 0)
		close(m->pagemap_fd);
	free(m);
}

/* ---- JSON ------------------------------------------------------------------ */

static json_t *ratios_json(const struct demand_ratios *r)
{
	return json_pack("{s:f, s:f, s:f}", "usage", r->usage, "demand", r->demand, "ready",
			 r->ready);
}

static json_t *interval_json(const struct demand_interval *iv)
{
	struct demand_ratios r = demand_ratios_of(iv);
	json_t *o = ratios_json(&r);

	json_object_set_new(o, "period_ns", json_integer((json_int_t)iv->period_ns));
	json_object_set_new(o, "used_ns", json_integer((json_int_t)iv->used_ns));
	json_object_set_new(o, "ready_ns", json_integer((json_int_t)iv->ready_ns));
	json_object_set_new(o, "wait_ns", json_integer((json_int_t)iv->wait_ns));
	return o;
}

static json_t *exits_json(const struct vcpu_metrics *v)
{
	json_t *o = json_object();

	for (unsigned k = 0; k < KSTAT_NR; k++)
		json_object_set_new(o, kvm_stat_name(k), json_integer((json_int_t)v->kstat[k]));
	return o;
}

static json_t *memory_json(const struct vm_metrics *m)
{
	const struct wss_result *r = &m->wss_last;
	const char *method = !m->wss_on	      ? m->wss_why
			     : m->wss_private ? "sampled-zap-pagemap+dirty-log"
					      : "sampled-zap-pagemap";
	json_t *o = json_pack("{s:I, s:s}", "guest_bytes", (json_int_t)m->vm->mem.size,
			      "working_set_method", method);

	if (!m->wss_have)
		return o;
	json_object_set_new(o, "resident_bytes", json_integer((json_int_t)r->resident_bytes));
	json_object_set_new(o, "working_set_bytes", json_integer((json_int_t)r->estimate_bytes));
	json_object_set_new(o, "working_set_period_ms", json_integer(m->cfg.wss_period_ms));
	json_object_set_new(o, "sampled_pages", json_integer((json_int_t)r->sampled));
	json_object_set_new(o, "touched_pages", json_integer((json_int_t)r->touched));
	json_object_set_new(o, "zap_us", json_integer((json_int_t)(r->zap_ns / 1000)));
	json_object_set_new(o, "scan_us", json_integer((json_int_t)(r->scan_ns / 1000)));
	if (m->wss_private) {
		/* Samples the clone had privately written (the dirty log
		 * watched them), samples zapped, how long the vCPUs were
		 * parked for the last arm (zap_us of it was the arm itself),
		 * arms put off. */
		json_object_set_new(o, "dirty_log_samples", json_integer((json_int_t)r->dirty_sampled));
		json_object_set_new(o, "zapped_pages", json_integer((json_int_t)r->zapped));
		json_object_set_new(o, "pause_us", json_integer((json_int_t)(m->wss_pause_ns / 1000)));
		json_object_set_new(o, "arms_deferred", json_integer((json_int_t)m->wss_deferred));
	}
	return o;
}

static json_t *io_json(const struct vm_metrics *m)
{
	json_t *a = json_array();
	const struct vm *vm = m->vm;
	uint64_t now = mono_ns();

	for (unsigned d = 0; d < vm->cfg.nr_drives; d++) {
		if (!vm->blk[d])
			continue;
		const struct blk_stats *st = virtio_blk_stats(vm->blk[d]);
		uint64_t rd = st->read_ops, wr = st->write_ops;
		uint64_t other = st->flush_ops + st->discard_ops + st->write_zeroes_ops;
		/* throttled_ns: how long the queue waited on its token buckets. */
		json_array_append_new(
			a, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "device", "block",
				     "id", vm->cfg.drives[d].id, "ops", (json_int_t)(rd + wr + other),
				     "read_ops", (json_int_t)rd, "write_ops", (json_int_t)wr,
				     "read_bytes", (json_int_t)st->read_bytes, "write_bytes",
				     (json_int_t)st->write_bytes, "rate_limited_events",
				     (json_int_t)st->rate_limited, "throttled_ns",
				     (json_int_t)rl_throttle_ns(&st->throttled, now)));
	}
	/* Network: "read" is what the guest received (RX), "write" what it sent. */
	for (unsigned i = 0; i < vm->cfg.nr_nets; i++) {
		if (!vm->net[i])
			continue;
		const struct net_stats *st = virtio_net_stats(vm->net[i]);
		uint64_t rx = st->rx_frames, tx = st->tx_frames;
		uint64_t rx_thr = rl_throttle_ns(&st->rx_throttled, now),
			 tx_thr = rl_throttle_ns(&st->tx_throttled, now);
		json_array_append_new(
			a, json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "device",
				     "net", "id", vm->cfg.nets[i].id, "ops", (json_int_t)(rx + tx),
				     "read_ops", (json_int_t)rx, "write_ops", (json_int_t)tx,
				     "read_bytes", (json_int_t)st->rx_bytes, "write_bytes",
				     (json_int_t)st->tx_bytes, "rate_limited_events",
				     (json_int_t)(st->rx_rate_limited + st->tx_rate_limited),
				     "throttled_ns", (json_int_t)(rx_thr + tx_thr), "read_throttled_ns",
				     (json_int_t)rx_thr, "write_throttled_ns", (json_int_t)tx_thr));
	}
	return a;
}

json_t *vm_metrics_json(const struct vm_metrics *m)
{
	struct demand_ratios last[VM_MAX_VCPUS], win[VM_MAX_VCPUS], ewma[VM_MAX_VCPUS];
	json_t *vcpus = json_array();
	unsigned n = m->vm->nr_vcpus;

	for (unsigned i = 0; i < n; i++) {
		const struct vcpu_metrics *v = &m->vcpu[i];
		struct demand_interval w = demand_vcpu_window(&v->est);
		last[i] = demand_ratios_of(&v->est.last);
		win[i] = demand_ratios_of(&w);
		ewma[i] = v->est.ewma.avg;
		json_t *wj = interval_json(&w);
		json_object_set_new(wj, "intervals", json_integer(v->est.window.len));
		json_t *o = json_pack("{s:i, s:o, s:o, s:o, s:o, s:I, s:I}", "id", (int)i, "last",
				      interval_json(&v->est.last), "window", wj, "ewma",
				      ratios_json(&v->est.ewma.avg), "kvm", exits_json(v),
				      "halt_wait_ns_last", (json_int_t)v->halt_wait_last_ns,
				      "counter_resets", (json_int_t)v->est.nr_resets);
		json_array_append_new(vcpus, o);
	}
	/* A jailed mote without /proc in its chroot cannot open schedstat:
	 * say so rather than report an idle VM. */
	const char *cpu_source = "schedstat";
	for (unsigned i = 0; i < n; i++)
		if (!m->vcpu[i].seen)
			cpu_source = "unavailable: a vCPU thread could not read "
				     "/proc/thread-self/schedstat (no /proc in a jail?)";
	struct demand_ratios s_last = demand_ratios_sum(last, n), s_win = demand_ratios_sum(win, n),
			     s_ewma = demand_ratios_sum(ewma, n);
	json_t *vmj = json_pack("{s:i, s:o, s:o, s:o}", "vcpus", (int)n, "last",
				ratios_json(&s_last), "window", ratios_json(&s_win), "ewma",
				ratios_json(&s_ewma));
	return json_pack("{s:I, s:i, s:i, s:f, s:I, s:s, s:s, s:o, s:o, s:o, s:o}", "pid",
			 (json_int_t)getpid(), "period_ms", (int)m->cfg.period_ms, "window",
			 (int)m->cfg.window, "ewma_alpha", m->cfg.alpha, "samples",
			 (json_int_t)m->nr_ticks, "halt_polling",
			 m->halt_poll_off ? "disabled" : "accounted", "cpu_source", cpu_source, "vm",
			 vmj, "vcpus", vcpus, "memory", memory_json(m), "io", io_json(m));
}
