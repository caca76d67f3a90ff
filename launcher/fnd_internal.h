/* mote-fnd's internal types, shared by fnd.c (functions, instances,
 * invocations), fnd_api.c (the HTTP handlers) and fnd_metrics.c. */
#ifndef MOTE_LAUNCHER_FND_INTERNAL_H
#define MOTE_LAUNCHER_FND_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "launcher/admit.h"
#include "launcher/cpudemand.h"
#include "launcher/evloop.h"
#include "launcher/fnd.h"
#include "launcher/fnwire.h"
#include "launcher/http.h"
#include "launcher/inst_state.h"
#include "launcher/proc.h"
#include "launcher/spawner.h"
#include "launcher/spec.h"

/* The state directory is checked short enough at start-up that every
 * socket path under it fits a sockaddr_un. */
#define FND_STATE_DIR_MAX 48
#define FND_DIR_MAX 64                  /* <state>/run and the like */
#define FND_PATH_MAX 512
#define FND_INST_DIR_MAX 144            /* <state>/jail/mote/<fn>-<id>/root */

/* An instance's files: relative paths, resolved in its own directory (or
 * jail root), so one snapshot's socket path is each clone's own. */
#define GUEST_CID 3
#define VSOCK_NAME "v.sock"
#define READY_NAME "v.sock_53"
#define API_NAME "a.sock"
#define RETRY_FIRST_NS 100000ull      /* connect retry backoff while a VM starts */
/* A clone's socket appears 3-5 ms after the spawn (jail, restore): a
 * 2 ms step lost up to 2 ms of each start; a try costs ~15 us. */
#define RETRY_MAX_NS 500000ull
#define DEADLINE_GRACE_MS 1000u       /* past the runtime's own deadline */
#define API_CALL_TIMEOUT_MS 10000

/* START_STANDBY: a clone restored ahead of time and paused (the spec's
 * "standby"), told to run when a start took it. */
enum start_kind { START_COLD, START_RESTORE, START_STANDBY, START_WARM, START_NR };

enum snap_state {
	SNAP_NONE,          /* no warm snapshot yet: the next start boots and makes one */
	SNAP_BUILDING,      /* a template instance is booting to make it */
	SNAP_READY,
	SNAP_UNAVAILABLE,   /* this mote cannot snapshot the function's VM: every start boots */
};

/* Latency histogram (microseconds), Prometheus-style cumulative on output. */
#define HIST_BUCKETS 16
struct hist {
	uint64_t count, sum_us;
	uint64_t bucket[HIST_BUCKETS + 1]; /* last: +Inf */
};
extern const uint64_t hist_bounds_us[HIST_BUCKETS];
void hist_add(struct hist *h, uint64_t us);

struct instance;
struct invocation;

struct function {
	struct fnd *d;
	struct fn_spec spec;
	struct function *next;
	char dir[FND_DIR_MAX + FN_NAME_MAX + 2]; /* <state>/fn/<name>: the warm snapshot */
	char snap_state_path[FND_PATH_MAX], snap_mem_path[FND_PATH_MAX];
	enum snap_state snap;
	struct file_ident snap_image;   /* the image the snapshot was made from */
	char snap_note[512];            /* why SNAP_UNAVAILABLE, or the last build failure */
	char boot_error[1024];          /* the last cold boot that failed */
	uint64_t boot_error_ns;
	bool deleted, pumping;

	struct instance *insts;         /* free slots first, busy and starting last */
	struct instance *insts_tail;    /* the last of them: appends are O(1) */
	unsigned nr_insts, nr_starting, nr_inflight;
	struct invocation *q_head, *q_tail;
	unsigned nr_queued;

	uint64_t starts[START_NR], start_failures, invocations, errors, rejected;
	uint64_t stream_retries;        /* clones that dropped their first stream */
	/* Dispatch -> a clone's socket there (its first connect worked): a
	 * floor that follows the fastest recent starts (the minimum, rising
	 * by 1/8 per slower start), so a queue of slow starts on a loaded
	 * host does not make the next one wait; halved when a first try found
	 * the socket (no floor then, see inv_connect). 0: no clone yet. */
	uint64_t clone_connect_ns;
	bool clone_connect_busy;        /* ... learnt while other clones started */
	double cpu_demand;              /* summed over its sampled instances, CPUs */
	unsigned cpu_primed;            /* instances with a demand figure */
	uint64_t by_status[8];          /* runtime status of completed invocations */
	/* By how the instance started (START_COLD, _RESTORE, _STANDBY; a warm
	 * reuse is no start): spawn (a standby: its take) -> ready. */
	struct hist start_hist[START_WARM];
	unsigned nr_standby;            /* instances in INST_STANDBY */
	struct hist total_hist, handler_hist, queue_hist;
};

struct instance {
	struct function *fn;
	uint64_t id;
	pid_t pid;
	enum inst_state state;
	enum start_kind kind;           /* START_COLD, START_RESTORE or START_STANDBY */
	/* A standby taken by a start: told to run (SIGUSR2) once its socket
	 * answers, i.e. once its monitor has set up its signalfd. */
	bool wake_pending;
	bool wake_ready;                /* ... and its socket has answered */
	bool is_template;               /* booted to make the warm snapshot */
	bool first_pending;             /* its first invocation reports kind */
	char name[FN_NAME_MAX + 24];    /* <fn>-<id>: jail id, log name */
	char dir[FND_INST_DIR_MAX];     /* where its sockets are (the jail root when jailed) */
	char top_dir[FND_INST_DIR_MAX]; /* what to remove once it is gone */
	char log_path[FND_INST_DIR_MAX];
	unsigned inflight;
	uint64_t spawn_ns, ready_ns, last_used_ns;
	struct ev_timer timer;          /* start deadline, then idle TTL */
	/* cold boot: the listener on v.sock_53 and the runtime's stream */
	struct ev_watch ready_lw, ready_cw;
	char ready_buf[64];
	size_t ready_len;
	off_t log_off;                  /* how much of its log was looked at for the ready line */
	struct invocation *invs;        /* in flight on it */
	bool failed_start;
	bool spawning;                  /* asked the spawner; no pid yet */
	uint64_t ready_signal_ns;       /* template: when its runtime said ready */
	uint64_t settle_run_ns;         /* template: its vCPU's run time at the last look */
	unsigned settle_quiet;          /* template: looks in a row that found it halted */
	bool spawn_failed;              /* its monitor never ran (exec failed) */
	uint64_t exec_ns;               /* the spawner (or vfork) saw the exec */
	struct cpu_demand cpu;          /* sampled while ready (fnd.c) */
	uint64_t loop_ns;               /* what starting it cost the daemon's loop */
	struct instance *snext;         /* d->spawning, oldest first */
	char exit_note[256];
	struct instance *prev, *next;   /* in fn->insts */
	struct instance *hnext;         /* pid hash */
};

struct invocation {
	struct fnd *d;
	struct http_req *req;           /* NULL: an internal probe (scale/check) */
	struct function *fn;
	struct instance *inst;
	enum start_kind start;
	uint64_t t_arrive, t_dispatch, t_connected, t_done;
	uint64_t t_spawn;               /* its instance's spawn, when it started one */
	uint64_t t_exec, loop_ns;       /* that instance's exec, and its cost to the loop */
	char inst_name[FN_NAME_MAX + 24]; /* who served it (X-Mote-Instance) */
	struct ev_watch w;
	int fd;
	char prefix[64];
	size_t prefix_len, sent;        /* prefix then body */
	const char *body;
	size_t body_len;
	struct fn_reader rd;
	struct ev_timer timer;          /* connect retry, then deadline */
	unsigned retries;
	unsigned reset_retries;         /* streams a just-restored VM dropped */
	bool connect_failed;            /* a clone's socket was not there yet once */
	bool first_on_clone;            /* dispatched to a clone still restoring */
	bool queued, connected;
	/* probes: who to tell */
	void (*done_cb)(struct invocation *inv, int http_status, const char *msg);
	void *done_opaque;
	struct invocation *qprev, *qnext;   /* fn queue */
	struct invocation *iprev, *inext;   /* inst->invs */
};

struct fnd {
	struct fnd_config cfg;
	struct evloop *loop;
	struct http_server *http;
	struct ev_watch sig_w;
	struct function *fns;
	struct instance **pid_hash;
	size_t pid_hash_size;
	uint64_t next_inst_id;
	unsigned nr_insts, nr_inflight_socks, nr_boot_socks;
	uint64_t mem_mib_live;
	uint64_t free_mib;              /* MemAvailable, refreshed at most every 100 ms */
	uint64_t free_mib_ns;
	uint64_t rejected_host, rejected_fn, invocations, errors;
	uint64_t started_ns;
	bool stopping;
	char run_dir[FND_DIR_MAX], jail_base[FND_DIR_MAX], log_dir[FND_DIR_MAX],
		fn_dir[FND_DIR_MAX], bin_dir[FND_DIR_MAX];
	bool jail_tmpfs;                    /* jail_base is our tmpfs (holds fn/ and bin/) */
	/* Where live instances' logs are: log_dir, or <jail_base>/log on the
	 * tmpfs (a failed start's log is then copied to log_dir). */
	char live_log_dir[FND_DIR_MAX];
	char mote_copy[FND_DIR_MAX + 16];   /* jailed: the monitor the jails link */
	/* Starting monitors without waiting for their exec (spawner.h). */
	struct spawner *spawner;
	struct ev_watch spawn_w;
	int null_fd;
	/* A unix socket whose connect to a starting clone failed (no socket
	 * there yet): the next attempt reuses it (a failed connect leaves an
	 * AF_UNIX socket unconnected), ~6 attempts per start. -1: none. */
	int spare_sock;
	struct instance *spawning, *spawning_tail; /* requests not answered yet, in order */
	unsigned nr_spawning;
	/* Children reaped before the spawner's reply named them (a monitor
	 * that died at once): looked up when the reply comes. */
	struct { pid_t pid; int status; } early[64];
	unsigned early_next;
	/* CPU demand sampling: a few hundred instances per tick, round the
	 * pid table; the sums are redone at each full round. */
	struct ev_timer demand_timer;
	size_t demand_slot;
	unsigned demand_done;           /* samples taken in this tick's round */
	uint64_t demand_round_ns;       /* when this tick's round began */
	double cpu_demand;
};

/* fnd.c */
struct function *fnd_find(struct fnd *d, const char *name);
int fnd_register(struct fnd *d, const struct fn_spec *spec, bool *created, char *err,
		 size_t errlen);
void fnd_delete(struct fnd *d, struct function *fn);
/* Takes inv over: it is answered (or its done_cb called) exactly once. */
void fnd_invoke(struct fnd *d, struct invocation *inv);
struct invocation *inv_new(struct fnd *d, struct function *fn, struct http_req *req);
/* Starts one instance now (scale): its probe reports through done_cb. */
int fnd_start_probe(struct fnd *d, struct function *fn, struct invocation *probe, char *why,
		    size_t whylen);
/* Probes an existing ready instance (check). */
void fnd_probe_instance(struct fnd *d, struct instance *inst, struct invocation *probe);
void fnd_host_state(struct fnd *d, struct admit_host *h);
unsigned fnd_fds_in_use(struct fnd *d);
const char *start_kind_name(enum start_kind k);
const char *snap_state_name(enum snap_state s);

/* What one more instance of fn is expected to demand: the mean of its
 * sampled instances (0 while none is). */
double fn_cpu_profile(const struct function *fn);
/* Takes a dying instance's demand out of the sums. */
void fnd_demand_forget(struct fnd *d, struct instance *inst);

/* fnd.c (internal) */
void pid_insert(struct fnd *d, struct instance *inst);
void fn_free(struct fnd *d, struct function *fn);
/* Stops every instance of fn (they drain what they run). */
void fn_stop_all(struct fnd *d, struct function *fn);
/* Answers every waiting invocation of fn with status and msg. */
void fn_fail_queue(struct fnd *d, struct function *fn, int status, const char *msg);

/* fnd_inst.c */
void inst_list_remove(struct instance *inst);
void inst_list_push(struct instance *inst, bool front);
bool inst_has_slot(const struct instance *inst);
/* Moves inst through inst_state.h's machine, acting on the state entered. */
void inst_event(struct fnd *d, struct instance *inst, enum inst_event ev);
/* A new instance of fn (clone or boot), or NULL with why. */
struct instance *inst_start(struct fnd *d, struct function *fn, char *why, size_t whylen);
/* Standby clones (spec.standby): made, taken by a start, dropped with the
 * snapshot they came from. */
void fn_fill_standby(struct fnd *d, struct function *fn);
struct instance *fn_take_standby(struct fnd *d, struct function *fn);
void fn_drop_standby(struct fnd *d, struct function *fn, unsigned keep);
void standby_sched(struct instance *inst, bool idle);
void inst_wake(struct instance *inst);
/* Its process was reaped with status: fail what it held, free it. */
void inst_reaped(struct fnd *d, struct instance *inst, int status);
/* The spawner's socket has replies: pids of started monitors. */
void inst_spawner_cb(struct ev_watch *w, uint32_t events);
/* An exit the pid table did not know: kept while spawns are pending. */
void fnd_early_exit(struct fnd *d, pid_t pid, int status);

/* fnd_inv.c */
/* Hands waiting invocations of fn to whatever can take them now. */
void fn_pump(struct fnd *d, struct function *fn);
void inv_run_on(struct invocation *inv, struct instance *inst);
void inv_connect(struct invocation *inv);
void inv_retry_later(struct invocation *inv);
void inv_io(struct ev_watch *w, uint32_t events);
/* Answers inv with an error and frees it; broken: its VM is not used again. */
void inv_fail(struct invocation *inv, int status, bool broken, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* fnd_api.c */
void fnd_http_handler(void *opaque, struct http_req *r);

/* fnd_metrics.c */
char *fnd_metrics_text(struct fnd *d, size_t *len);

#endif
