/* mote-agent: discovery, the scrape-and-act loop, the Prometheus endpoint,
 * admission. See agent.h and agent/README.md. */
#include "agent/agent.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_LISTEN "127.0.0.1:9464"
#define DEFAULT_INTERVAL_MS 1000
#define REQ_MAX 4096

struct agent {
	char vm_dir[AGENT_PATH_MAX];
	unsigned interval_ms;
	struct agent_policy policy;
	struct agent_admission adm;
	bool act;                    /* set cgroups */
	struct agent_cgroup cg;
	struct agent_vm vms[AGENT_MAX_VMS];
	unsigned nr_vms;
	uint64_t scrapes, scrape_errors;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The VMs are the *.sock files of vm_dir; a VM whose socket went away is
 * dropped (and its cgroup removed when the agent made one). */
static void discover(struct agent *a)
{
	DIR *d = opendir(a->vm_dir);
	struct dirent *e;
	bool seen[AGENT_MAX_VMS] = { false };

	if (!d) {
		fprintf(stderr, "mote-agent: cannot read %s: %s\n", a->vm_dir, strerror(errno));
		return;
	}
	while ((e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (len <= 5 || len - 5 >= AGENT_NAME_MAX || strcmp(e->d_name + len - 5, ".sock"))
			continue;
		char name[AGENT_NAME_MAX];
		memcpy(name, e->d_name, len - 5);
		name[len - 5] = '\0';
		unsigned i;
		for (i = 0; i < a->nr_vms; i++)
			if (!strcmp(a->vms[i].name, name))
				break;
		if (i == a->nr_vms) {
			if (a->nr_vms == AGENT_MAX_VMS)
				continue;
			struct agent_vm *vm = &a->vms[a->nr_vms++];
			memset(vm, 0, sizeof(*vm));
			snprintf(vm->name, sizeof(vm->name), "%s", name);
			/* vm_dir is shorter than sock by the longest name; checked at start. */
			size_t dl = strlen(a->vm_dir);
			memcpy(vm->sock, a->vm_dir, dl);
			vm->sock[dl] = '/';
			memcpy(vm->sock + dl + 1, e->d_name, len + 1);
		}
		seen[i] = true;
	}
	closedir(d);
	for (unsigned i = a->nr_vms; i-- > 0;) {
		if (seen[i])
			continue;
		if (a->act)
			agent_cgroup_remove(&a->cg, a->vms[i].name);
		a->vms[i] = a->vms[--a->nr_vms];
		seen[i] = seen[a->nr_vms];
	}
}

static void act(struct agent *a, struct agent_vm *vm)
{
	struct agent_entitlement e;
	char err[256];

	agent_entitlement(&a->policy, vm->window.demand, vm->nr_vcpus, &e);
	if (agent_cgroup_apply(&a->cg, vm->name, vm->pid, &e, err, sizeof(err))) {
		fprintf(stderr, "mote-agent: %s\n", err);
		return;
	}
	unsigned shares = a->cg.version == 1 ? e.shares_v1 : e.weight_v2;
	/* Logged when the share moves by more than a tenth (or first set). */
	if (!vm->shares || shares * 10 > vm->shares * 11 || shares * 11 < vm->shares * 10)
		fprintf(stderr, "mote-agent: VM %s: demand %.2f CPUs (usage %.2f) -> %s %u, cap "
			"%.2f CPUs\n", vm->name, vm->window.demand, vm->window.usage,
			a->cg.version == 1 ? "cpu.shares" : "cpu.weight", shares,
			e.quota_us > 0 ? (double)e.quota_us / (double)e.period_us : 0.0);
	vm->shares = shares;
	vm->quota_us = e.quota_us;
	vm->period_us = e.period_us;
}

static void scrape_all(struct agent *a)
{
	discover(a);
	for (unsigned i = 0; i < a->nr_vms; i++) {
		struct agent_vm *vm = &a->vms[i];
		a->scrapes++;
		if (agent_scrape(vm)) {
			a->scrape_errors++;
			continue;
		}
		if (a->act && vm->pid > 0)
			act(a, vm);
	}
}

/* A running VM as the profile: its current demand. -1 if unknown. */
static double demand_like(const struct agent *a, const char *name, size_t len)
{
	for (unsigned i = 0; i < a->nr_vms; i++)
		if (a->vms[i].up && strlen(a->vms[i].name) == len && !strncmp(a->vms[i].name, name, len))
			return a->vms[i].window.demand;
	return -1;
}

static double host_demand(const struct agent *a)
{
	double s = 0;

	for (unsigned i = 0; i < a->nr_vms; i++)
		if (a->vms[i].up)
			s += a->vms[i].window.demand;
	return s;
}

/* ---- the HTTP endpoint (loopback TCP) ------------------------------------------ */

static int listen_on(const char *spec)
{
	char host[64];
	const char *colon = strrchr(spec, ':');
	struct sockaddr_in sa = { .sin_family = AF_INET };

	if (!colon || (size_t)(colon - spec) >= sizeof(host))
		return -EINVAL;
	memcpy(host, spec, (size_t)(colon - spec));
	host[colon - spec] = '\0';
	long port = strtol(colon + 1, NULL, 10);
	if (port < 0 || port > 65535 || inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -EINVAL;
	sa.sin_port = htons((uint16_t)port);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 16)) {
		int ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

static void respond(int fd, int status, const char *ctype, const char *body, size_t len)
{
	char hdr[256];
	const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found"
					   : status == 409 ? "Conflict" : "Bad Request";
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", status, reason, ctype, len);

	if (write(fd, hdr, (size_t)n) != n || (len && write(fd, body, len) != (ssize_t)len)) {
		/* the client went away */
	}
}

static double query_num(const char *q, const char *key, double def)
{
	size_t kl = strlen(key);

	for (const char *p = q; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL)
		if (!strncmp(p, key, kl) && p[kl] == '=')
			return strtod(p + kl + 1, NULL);
	return def;
}

static void serve_admit(struct agent *a, int fd, const char *query)
{
	char msg[512], body[768];
	unsigned max_fit = 0;
	double demand = query_num(query, "demand", -1);
	const char *like = strstr(query, "like=");
	if (like && (like == query || like[-1] == '&'))
		demand = demand_like(a, like + 5, strcspn(like + 5, "&"));
	double count = query_num(query, "count", 1);
	int ok = count >= 0 && count <= 1e6
			 ? agent_admit(&a->adm, host_demand(a), demand, (unsigned)count, &max_fit, msg,
				       sizeof(msg))
			 : -EINVAL;

	if (ok < 0)
		snprintf(msg, sizeof(msg), "usage: GET /admit?demand=CPUS&count=N or "
			 "/admit?like=VM&count=N (a running VM as the profile)");
	int n = snprintf(body, sizeof(body), "{\"admitted\":%s,\"max_fit\":%u,\"message\":\"%s\"}\n",
			 ok == 1 ? "true" : "false", max_fit, msg);
	respond(fd, ok < 0 ? 400 : ok ? 200 : 409, "application/json", body, (size_t)n);
}

static void serve_client(struct agent *a, int fd)
{
	char req[REQ_MAX];
	size_t len = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (len < sizeof(req) - 1 && poll(&p, 1, 1000) > 0) {
		ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		req[len] = '\0';
		if (strstr(req, "\r\n\r\n"))
			break;
	}
	req[len] = '\0';
	char method[8], target[1024];
	if (sscanf(req, "%7s %1023s", method, target) != 2 || strcmp(method, "GET")) {
		respond(fd, 400, "text/plain", "GET only\n", 9);
		return;
	}
	char *query = strchr(target, '?');
	if (query)
		*query++ = '\0';
	if (!strcmp(target, "/metrics")) {
		char *buf = NULL;
		size_t blen = 0;
		FILE *f = open_memstream(&buf, &blen);
		if (!f)
			return;
		agent_prom_render(f, a->vms, a->nr_vms, &a->adm, a->scrapes, a->scrape_errors);
		fclose(f);
		respond(fd, 200, "text/plain; version=0.0.4", buf, blen);
		free(buf);
	} else if (!strcmp(target, "/admit")) {
		serve_admit(a, fd, query ? query : "");
	} else {
		respond(fd, 404, "text/plain", "try /metrics or /admit?demand=X&count=N\n", 41);
	}
}

static int serve(struct agent *a, const char *listen_spec)
{
	int lfd = listen_on(listen_spec);

	if (lfd < 0) {
		fprintf(stderr, "mote-agent: cannot listen on %s: %s\n", listen_spec, strerror(-lfd));
		return 1;
	}
	fprintf(stderr, "mote-agent: serving /metrics and /admit on http://%s, VMs from %s\n",
		listen_spec, a->vm_dir);
	uint64_t next = now_ms();
	while (!stopping) {
		uint64_t t = now_ms();
		if (t >= next) {
			scrape_all(a);
			next = t + a->interval_ms;
		}
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int n = poll(&p, 1, (int)(next > now_ms() ? next - now_ms() : 0));
		if (n > 0) {
			int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (c >= 0) {
				serve_client(a, c);
				close(c);
			}
		}
	}
	close(lfd);
	for (unsigned i = 0; a->act && i < a->nr_vms; i++)
		agent_cgroup_remove(&a->cg, a->vms[i].name);
	return 0;
}

/* mote-agent place: one step of placement from demand, carried out. */
static int place(struct agent *a, const struct agent_host *hosts, unsigned nr_hosts,
		 double target, bool dry_run, const struct agent_place_ctx *pctx)
{
	double demand[AGENT_MAX_VMS];
	int host_of[AGENT_MAX_VMS];
	struct agent_move moves[AGENT_MAX_VMS];
	char msg[512];
	unsigned nm = 0;
	int status = 0;

	if (!nr_hosts || (!dry_run && (!pctx->mote_bin || !pctx->state_dir))) {
		fprintf(stderr, "mote-agent: place needs --host NAME=CPUS (one per host) and, unless "
			"--dry-run, --mote PATH and --state-dir DIR\n");
		return 64;
	}
	if (!a->cg.version)
		a->cg.version = 1;
	for (unsigned h = 0; h < nr_hosts; h++) {
		if (agent_cgroup_host(&a->cg, hosts[h].name, hosts[h].capacity_cpus,
				      a->policy.period_us, msg, sizeof(msg))) {
			fprintf(stderr, "mote-agent: %s\n", msg);
			return 1;
		}
	}
	for (unsigned i = 0; i < a->nr_vms; i++) {
		demand[i] = a->vms[i].up ? a->vms[i].window.demand : 0;
		host_of[i] = a->vms[i].up ? agent_host_of(&a->cg, hosts, nr_hosts, a->vms[i].pid) : -2;
	}
	printf("placement: demand per host before:");
	for (unsigned h = 0; h < nr_hosts; h++) {
		double sum = 0;
		for (unsigned i = 0; i < a->nr_vms; i++)
			sum += host_of[i] == (int)h ? demand[i] : 0;
		printf(" %s %.2f/%.2f", hosts[h].name, sum, hosts[h].capacity_cpus);
	}
	printf("\n");
	int ret = agent_place_plan(demand, host_of, a->nr_vms, hosts, nr_hosts, target, moves,
				   AGENT_MAX_VMS, &nm, msg, sizeof(msg));
	if (ret == -EINVAL) {
		fprintf(stderr, "mote-agent: %s\n", msg);
		return 64;
	}
	if (!nm)
		printf("placement: nothing to move (%u VMs on %u hosts fit)\n", a->nr_vms, nr_hosts);
	for (unsigned k = 0; k < nm; k++) {
		struct agent_vm *vm = &a->vms[moves[k].vm];
		const char *to = hosts[moves[k].to].name;
		const char *from = moves[k].from >= 0 ? hosts[moves[k].from].name : "(no host)";
		printf("placement: %s (demand %.2f CPUs): %s -> %s", vm->name, demand[moves[k].vm],
		       from, to);
		fflush(stdout);
		if (dry_run) {
			printf(" (dry run)\n");
			continue;
		}
		struct timespec t0, t1;
		char err[512];
		clock_gettime(CLOCK_MONOTONIC, &t0);
		/* A VM on no host only needs its cgroup; one on a host moves. */
		int r = moves[k].from < 0 ? agent_cgroup_join(&a->cg, to, vm->pid)
					  : agent_move_vm(pctx, vm, to, err, sizeof(err));
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (r) {
			printf(": FAILED\n");
			fprintf(stderr, "mote-agent: %s\n", moves[k].from < 0 ? strerror(-r) : err);
			status = 1;
			continue;
		}
		printf(": done in %.0f ms\n", (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
						      (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	}
	if (ret == -ENOSPC) {
		printf("placement: refused in part: %s\n", msg);
		status = 1;
	}
	return status;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mote-agent serve --vm-dir DIR [--listen ADDR:PORT] [--interval-ms N]\n"
		"                        [--capacity-cpus X] [--overcommit X]\n"
		"                        [--cgroup-version 1|2 --cgroup-root PATH --cgroup-parent NAME]\n"
		"                        [--headroom X] [--min-cap-cpus X] [--no-cap]\n"
		"       mote-agent admit --vm-dir DIR (--demand CPUS | --like VM) [--count N]\n"
		"                        [--capacity-cpus X] [--overcommit X]\n"
		"       mote-agent scrape --vm-dir DIR\n"
		"       mote-agent place --vm-dir DIR --host NAME=CPUS [--host ...] [--target X]\n"
		"                        [--cgroup-version 1|2 --cgroup-root PATH --cgroup-parent NAME]\n"
		"                        (--dry-run | --mote PATH --state-dir DIR [--restore-demand S])\n"
		"\n"
		"serve   scrapes GET /demand of every VM whose API socket is DIR/<name>.sock every\n"
		"        interval (default 1000 ms); serves Prometheus text on GET /metrics and\n"
		"        admission on GET /admit?demand=X&count=N (default %s, loopback);\n"
		"        with --cgroup-version, puts each VM in <root>/<parent>/<name> and sets its\n"
		"        CPU share from demand (v1 cpu.shares = 1024/CPU, v2 cpu.weight = 100/CPU)\n"
		"        and its cap to demand x headroom (default 1.25, at least 0.1 CPU).\n"
		"admit   scrapes once; exit 0 if N more VMs of the given demand (or of a running\n"
		"        VM's, --like) fit under\n"
		"        capacity (default: online CPUs) x overcommit (default 1.0), else 1.\n"
		"scrape  prints the Prometheus text once.\n"
		"place   one-shot placement from demand: hosts are cgroups <root>/<parent>/<NAME>\n"
		"        capped at CPUS; the VMs of a host whose demand exceeds its capacity are\n"
		"        packed onto the others up to --target (0.9) of their capacity, largest\n"
		"        first; a move is pause, snapshot (into --state-dir), stop, restore under\n"
		"        --mote in the destination cgroup with the same API socket, resume.\n",
		DEFAULT_LISTEN);
}

enum {
	OPT_VM_DIR = 256, OPT_LISTEN, OPT_INTERVAL, OPT_CAPACITY, OPT_OVERCOMMIT, OPT_CG_VERSION,
	OPT_CG_ROOT, OPT_CG_PARENT, OPT_HEADROOM, OPT_MIN_CAP, OPT_NO_CAP, OPT_DEMAND, OPT_COUNT,
	OPT_LIKE, OPT_HOST, OPT_MOTE, OPT_STATE_DIR, OPT_TARGET, OPT_DRY_RUN, OPT_RESTORE_DEMAND,
};

static const struct option opts[] = {
	{ "vm-dir", required_argument, NULL, OPT_VM_DIR },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "interval-ms", required_argument, NULL, OPT_INTERVAL },
	{ "capacity-cpus", required_argument, NULL, OPT_CAPACITY },
	{ "overcommit", required_argument, NULL, OPT_OVERCOMMIT },
	{ "cgroup-version", required_argument, NULL, OPT_CG_VERSION },
	{ "cgroup-root", required_argument, NULL, OPT_CG_ROOT },
	{ "cgroup-parent", required_argument, NULL, OPT_CG_PARENT },
	{ "headroom", required_argument, NULL, OPT_HEADROOM },
	{ "min-cap-cpus", required_argument, NULL, OPT_MIN_CAP },
	{ "no-cap", no_argument, NULL, OPT_NO_CAP },
	{ "demand", required_argument, NULL, OPT_DEMAND },
	{ "like", required_argument, NULL, OPT_LIKE },
	{ "host", required_argument, NULL, OPT_HOST },
	{ "mote", required_argument, NULL, OPT_MOTE },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "target", required_argument, NULL, OPT_TARGET },
	{ "dry-run", no_argument, NULL, OPT_DRY_RUN },
	{ "restore-demand", required_argument, NULL, OPT_RESTORE_DEMAND },
	{ "count", required_argument, NULL, OPT_COUNT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int num_arg(const char *opt, const char *s, double min, double max, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (*end || end == s || !(v >= min && v <= max)) {
		fprintf(stderr, "mote-agent: %s: '%s' is not a number between %g and %g\n", opt, s,
			min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int main(int argc, char **argv)
{
	static struct agent a;
	const char *listen_spec = DEFAULT_LISTEN;
	double v, demand = -1, count = 1;
	const char *like = NULL;
	static struct agent_host hosts[AGENT_MAX_HOSTS];
	unsigned nr_hosts = 0;
	struct agent_place_ctx pctx = { .cg = &a.cg, .mote_bin = NULL, .state_dir = NULL };
	double target = 0.9;
	bool dry_run = false;
	int c;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 64 : 0;
	}
	const char *cmd = argv[1];
	agent_policy_default(&a.policy);
	a.interval_ms = DEFAULT_INTERVAL_MS;
	a.adm.capacity_cpus = (double)sysconf(_SC_NPROCESSORS_ONLN);
	a.adm.overcommit = 1.0;
	snprintf(a.cg.root, sizeof(a.cg.root), "/sys/fs/cgroup/cpu");
	snprintf(a.cg.parent, sizeof(a.cg.parent), "mote");
	optind = 2;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case OPT_VM_DIR: snprintf(a.vm_dir, sizeof(a.vm_dir), "%s", optarg); break;
		case OPT_LISTEN: listen_spec = optarg; break;
		case OPT_INTERVAL:
			if (num_arg("--interval-ms", optarg, 10, 3600000, &v))
				return 64;
			a.interval_ms = (unsigned)v;
			break;
		case OPT_CAPACITY:
			if (num_arg("--capacity-cpus", optarg, 0.01, 1e6, &a.adm.capacity_cpus))
				return 64;
			break;
		case OPT_OVERCOMMIT:
			if (num_arg("--overcommit", optarg, 0.01, 1000, &a.adm.overcommit))
				return 64;
			break;
		case OPT_CG_VERSION:
			if (num_arg("--cgroup-version", optarg, 1, 2, &v))
				return 64;
			a.cg.version = (int)v;
			a.act = true;
			break;
		case OPT_CG_ROOT: snprintf(a.cg.root, sizeof(a.cg.root), "%s", optarg); break;
		case OPT_CG_PARENT:
			if (!optarg[0] || strchr(optarg, '/')) {
				fprintf(stderr, "mote-agent: --cgroup-parent is one directory name\n");
				return 64;
			}
			snprintf(a.cg.parent, sizeof(a.cg.parent), "%s", optarg);
			break;
		case OPT_HEADROOM:
			if (num_arg("--headroom", optarg, 1, 100, &a.policy.headroom))
				return 64;
			break;
		case OPT_MIN_CAP:
			if (num_arg("--min-cap-cpus", optarg, 0.01, 1024, &a.policy.min_cap_cpus))
				return 64;
			break;
		case OPT_NO_CAP: a.policy.cap = false; break;
		case OPT_DEMAND:
			if (num_arg("--demand", optarg, 1e-6, 1024, &demand))
				return 64;
			break;
		case OPT_LIKE: like = optarg; break;
		case OPT_HOST: {
			const char *eq = strchr(optarg, '=');
			if (!eq || eq == optarg || (size_t)(eq - optarg) >= AGENT_NAME_MAX ||
			    nr_hosts == AGENT_MAX_HOSTS ||
			    num_arg("--host capacity", eq + 1, 0.01, 1024,
				    &hosts[nr_hosts].capacity_cpus)) {
				fprintf(stderr, "mote-agent: --host NAME=CPUS (at most %d hosts)\n",
					AGENT_MAX_HOSTS);
				return 64;
			}
			memcpy(hosts[nr_hosts].name, optarg, (size_t)(eq - optarg));
			hosts[nr_hosts].name[eq - optarg] = '\0';
			nr_hosts++;
			break;
		}
		case OPT_MOTE: pctx.mote_bin = optarg; break;
		case OPT_STATE_DIR: pctx.state_dir = optarg; break;
		case OPT_TARGET:
			if (num_arg("--target", optarg, 0.05, 1, &target))
				return 64;
			break;
		case OPT_DRY_RUN: dry_run = true; break;
		case OPT_RESTORE_DEMAND: pctx.demand_args = optarg; break;
		case OPT_COUNT:
			if (num_arg("--count", optarg, 0, 1e6, &count))
				return 64;
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 64;
		}
	}
	if (!a.vm_dir[0]) {
		fprintf(stderr, "mote-agent: --vm-dir DIR is required (where the VMs' API sockets "
			"are, as DIR/<name>.sock)\n");
		return 64;
	}
	if (!strcmp(cmd, "serve")) {
		struct sigaction sa = { .sa_handler = on_signal };
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGINT, &sa, NULL);
		signal(SIGPIPE, SIG_IGN);
		return serve(&a, listen_spec);
	}
	/* Only serve sets per-VM cgroups; place moves whole VMs between hosts. */
	a.act = false;
	scrape_all(&a);
	if (!strcmp(cmd, "scrape"))
		return agent_prom_render(stdout, a.vms, a.nr_vms, &a.adm, a.scrapes,
					 a.scrape_errors) ? 1 : 0;
	if (!strcmp(cmd, "admit")) {
		char msg[512];
		unsigned fit;
		if (like) {
			demand = demand_like(&a, like, strlen(like));
			if (demand <= 0) {
				fprintf(stderr, "mote-agent: no running VM '%s' with a known demand in "
					"%s\n", like, a.vm_dir);
				return 64;
			}
		}
		if (demand <= 0) {
			fprintf(stderr, "mote-agent: admit needs --demand CPUS or --like VM (the "
				"profile's demand)\n");
			return 64;
		}
		int ok = agent_admit(&a.adm, host_demand(&a), demand, (unsigned)count, &fit, msg,
				     sizeof(msg));
		printf("%s\n", msg);
		return ok == 1 ? 0 : 1;
	}
	if (!strcmp(cmd, "place"))
		return place(&a, hosts, nr_hosts, target, dry_run, &pctx);
	fprintf(stderr, "mote-agent: unknown command '%s'\n", cmd);
	usage(stderr);
	return 64;
}
