/* mote-agent: the host side of demand-based resource management.
 *
 * It discovers the mote VMs on a host (their API sockets in one
 * directory), scrapes each one's GET /demand, serves the figures as
 * Prometheus text on a loopback TCP port, sets each VM's cgroup CPU share
 * and cap from its demand (cgroup v1 cpu.shares/cpu.cfs_quota_us or v2
 * cpu.weight/cpu.max), and answers admission questions: do N more VMs of
 * a given demand fit under capacity x overcommit?
 *
 *   scrape.c  HTTP over a unix socket, /demand JSON -> struct agent_vm
 *   policy.c  entitlement (shares, cap) and admission: pure arithmetic
 *   prom.c    Prometheus text exposition
 *   cgroup.c  applying an entitlement to a VM's cgroup (v1 and v2)
 *   main.c    command line, discovery, the serve loop */
#ifndef MOTE_AGENT_H
#define MOTE_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define AGENT_MAX_VMS 256
#define AGENT_MAX_VCPUS 32
#define AGENT_MAX_EXITS 16
#define AGENT_MAX_IO 16
#define AGENT_NAME_MAX 64
#define AGENT_PATH_MAX 512

struct agent_ratios {
	double usage, demand, ready;
};

struct agent_counter {
	char name[32];
	uint64_t value;
};

struct agent_io {
	char device[16];
	char id[32];
	uint64_t ops, read_bytes, write_bytes, rate_limited;
	uint64_t throttled_ns; /* time the device's queues waited on its rate limiter */
};

struct agent_vm {
	char name[AGENT_NAME_MAX];       /* socket file name without .sock */
	char sock[AGENT_PATH_MAX + AGENT_NAME_MAX + 8];
	bool up;                         /* last scrape answered */
	pid_t pid;
	unsigned nr_vcpus;
	double period_ms;
	struct agent_ratios window, ewma;        /* the VM: sums over vCPUs, in CPUs */
	struct agent_ratios vcpu[AGENT_MAX_VCPUS]; /* each vCPU's window figures */
	unsigned nr_exits[AGENT_MAX_VCPUS];
	struct agent_counter exits[AGENT_MAX_VCPUS][AGENT_MAX_EXITS];
	uint64_t guest_bytes, resident_bytes, working_set_bytes;
	bool has_working_set;
	unsigned nr_io;
	struct agent_io io[AGENT_MAX_IO];
	/* What the agent applied last (0: nothing yet). */
	unsigned shares;                 /* v1 cpu.shares, or v2 cpu.weight */
	long quota_us, period_us;
};

/* scrape.c */
/* Parses a GET /demand body into vm (keeps name and sock). 0 or -EINVAL
 * with a message in err. */
int agent_parse_demand(const char *json, struct agent_vm *vm, char *err, size_t errlen);
/* GET path over the unix socket; the body (malloc'd) in *body. Returns
 * the HTTP status, or -errno. */
int agent_http_unix(const char *sock, const char *path, char **body);
/* Sends a whole request; the status, the body in *body when body is not
 * NULL (else dropped). */
int agent_http_raw(const char *sock, const char *req, char **body);
/* Scrapes one VM: 0, or -errno / -EPROTO with vm->up false. */
int agent_scrape(struct agent_vm *vm);

/* policy.c */
struct agent_policy {
	double headroom;      /* cap = demand x headroom ... */
	double min_cap_cpus;  /* ... at least this ... */
	unsigned period_us;   /* CFS period */
	bool cap;             /* false: shares only */
};

struct agent_entitlement {
	unsigned shares_v1;   /* cpu.shares: 1024 per CPU of demand */
	unsigned weight_v2;   /* cpu.weight: 100 per CPU of demand */
	long quota_us;        /* -1: no cap */
	long period_us;
};

void agent_policy_default(struct agent_policy *p);
/* Shares proportional to demand, capped at demand x headroom (at most
 * the VM's vCPUs): a VM gets what it needs, and a cap that grows with it
 * (capped time shows as Ready, so demand keeps rising to the true need). */
void agent_entitlement(const struct agent_policy *p, double demand_cpus, unsigned nr_vcpus,
		       struct agent_entitlement *out);

struct agent_admission {
	double capacity_cpus; /* host CPUs the VMs may use */
	double overcommit;    /* demand target as a multiple of capacity */
};

/* Would count more VMs of profile_demand CPUs each fit beside a current
 * summed demand? Returns 1 (fits) or 0 (refused), with the reasoning in
 * msg either way; -EINVAL for nonsense input. *max_fit: how many would. */
int agent_admit(const struct agent_admission *a, double current_demand_cpus,
		double profile_demand_cpus, unsigned count, unsigned *max_fit, char *msg,
		size_t msglen);

/* prom.c */
/* Writes the Prometheus text exposition (version 0.0.4) of every VM. */
int agent_prom_render(FILE *f, const struct agent_vm *vms, unsigned n,
		      const struct agent_admission *a, uint64_t scrapes, uint64_t scrape_errors);

/* place.c: one-shot placement from demand across "hosts" (cgroups with a
 * CPU capacity), carried out by moving VMs: pause, snapshot, stop,
 * restore in the destination cgroup, resume. */
#define AGENT_MAX_HOSTS 64

struct agent_host {
	char name[AGENT_NAME_MAX];
	double capacity_cpus;
};

struct agent_move {
	unsigned vm;          /* index into the VM array */
	int from, to;         /* host indexes (from -1: on no host yet) */
};

/* Plans one step: the VMs of every host whose summed demand exceeds its
 * capacity (and VMs on no host) are packed, largest first, onto the hosts
 * with the most room, each host filled up to target x capacity; on an
 * overloaded host the smallest VMs stay. host_of[i] is VM i's host (-1:
 * none). Returns the number of moves written (at most max), or -ENOSPC
 * with msg saying how much capacity is missing when some VM fits nowhere
 * (the moves that do fit are still returned through *nmoves). */
int agent_place_plan(const double *demand, const int *host_of, unsigned nr_vms,
		     const struct agent_host *hosts, unsigned nr_hosts, double target,
		     struct agent_move *moves, unsigned max, unsigned *nmoves, char *msg,
		     size_t msglen);

struct agent_place_ctx {
	const struct agent_cgroup *cg;  /* hosts are <root>/<parent>/<host> */
	const char *mote_bin;
	const char *state_dir;          /* snapshot files and the restored VMs' logs */
	const char *demand_args;        /* --demand for the restored mote, or NULL */
};

/* Moves one VM to host dest (see above). 0 or -errno with a message. */
int agent_move_vm(const struct agent_place_ctx *ctx, struct agent_vm *vm, const char *dest,
		  char *err, size_t errlen);
/* The host (index) whose cgroup holds pid, or -1. */
int agent_host_of(const struct agent_cgroup *cg, const struct agent_host *hosts, unsigned n,
		  pid_t pid);

/* cgroup.c */
struct agent_cgroup {
	int version;             /* 1 or 2 */
	char root[AGENT_PATH_MAX]; /* v1: the cpu controller's mount; v2: the unified mount */
	char parent[AGENT_NAME_MAX]; /* directory the agent creates VMs' cgroups in */
};

/* Creates <root>/<parent>/<vm> (and the parent; v2: enables +cpu), moves
 * pid into it, writes the entitlement. 0 or -errno with a message. */
int agent_cgroup_apply(const struct agent_cgroup *cg, const char *vm, pid_t pid,
		       const struct agent_entitlement *e, char *err, size_t errlen);
/* A placement host: <root>/<parent>/<host> capped at cap_cpus (v1
 * cpu.cfs_quota_us, v2 cpu.max). 0 or -errno with a message. */
int agent_cgroup_host(const struct agent_cgroup *cg, const char *host, double cap_cpus,
		      unsigned period_us, char *err, size_t errlen);
/* Moves a whole process into <root>/<parent>/<host>. 0 or -errno. */
int agent_cgroup_join(const struct agent_cgroup *cg, const char *host, pid_t pid);
/* Removes the VM's cgroup (only possible once its processes are gone). */
int agent_cgroup_remove(const struct agent_cgroup *cg, const char *vm);

#endif
