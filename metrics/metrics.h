/* Per-VM demand metrics gathered by mote itself, with no guest
 * cooperation: CPU Used/Ready/Wait per vCPU and the demand, usage and
 * ready ratios derived from them (metrics/demand.h), exits by reason and
 * halts (KVM's per-vCPU statistics), resident memory and the working set
 * (metrics/wss.h), and I/O per device.
 *
 * A timerfd in the VMM thread's event loop samples every period; the
 * answers (GET /demand, the `demand` group of the metrics JSON lines) are
 * built on the same thread from the last samples, so nothing is locked. */
#ifndef MOTE_METRICS_METRICS_H
#define MOTE_METRICS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define METRICS_DEFAULT_PERIOD_MS 1000
#define METRICS_DEFAULT_WINDOW 10
#define METRICS_DEFAULT_ALPHA 0.3
#define METRICS_DEFAULT_WSS_SAMPLES 1024
#define METRICS_DEFAULT_WSS_PERIOD_MS 1000
#define METRICS_MIN_PERIOD_MS 10
#define METRICS_MAX_PERIOD_MS 3600000
#define METRICS_DEFAULT_FLUSH_MS 60000

struct metrics_config {
	unsigned period_ms;        /* CPU sampling period (0: the default) */
	unsigned window;           /* intervals in the moving window */
	double alpha;              /* EWMA weight of the newest interval */
	bool wss_off;              /* no working-set tracking */
	/* A restored clone (private guest RAM): turn KVM's dirty log on to
	 * see the pages it privately wrote (wss=dirty-log). With
	 * track_dirty_pages the log is on anyway and is used. */
	bool wss_dirty_log;
	uint64_t wss_sample_pages; /* 0: the default; UINT64_MAX: every page */
	unsigned wss_period_ms;    /* working-set interval, a multiple of period_ms */
	unsigned flush_ms;         /* periodic metrics-file flush (0: 60 s, as Firecracker) */
};

struct vm;
struct event_loop;
struct vm_metrics;

/* Called on every sampling tick after the sample (periodic metrics flush). */
typedef void (*metrics_tick_fn)(void *opaque);

/* --demand's comma-separated settings: period-ms=N, window=N, alpha=X,
 * wss=on|off|dirty-log, wss-samples=N|all, wss-period-ms=N, flush-ms=N. 0 or
 * -EINVAL with a message in err. */
int metrics_parse_arg(const char *arg, struct metrics_config *cfg, char *err, size_t errlen);
/* Fills unset fields with the defaults and checks ranges; 0 or -EINVAL
 * with a message in err. */
int metrics_config_finish(struct metrics_config *cfg, char *err, size_t errlen);

/* After the vCPUs exist and before the lock-down: turns KVM halt polling
 * off for this VM (KVM_CAP_HALT_POLL; if the kernel refuses, the polling
 * time is subtracted from Used instead), opens each vCPU's KVM statistics
 * and /proc/self/pagemap, checks that guest RAM is a shared mapping, arms
 * the timer in loop. 0 or -errno (logged). */
int vm_metrics_create(struct vm_metrics **out, struct vm *vm, struct event_loop *loop,
		      const struct metrics_config *cfg, metrics_tick_fn tick, void *opaque);
/* Stops (on false) or restarts the sampling timer, from a new baseline:
 * a --standby clone samples nothing while it waits. 0 or -errno. */
int vm_metrics_set_sampling(struct vm_metrics *m, bool on);
/* Removes the timer, closes every fd (the vCPUs' schedstat fds too). */
void vm_metrics_destroy(struct vm_metrics *m, struct event_loop *loop);
/* Takes a sample now (the timer does it every period). */
void vm_metrics_sample(struct vm_metrics *m);
/* The `demand` object: GET /demand's body and the metrics lines' group. */
json_t *vm_metrics_json(const struct vm_metrics *m);

#endif
