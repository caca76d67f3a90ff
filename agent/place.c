/* One-shot placement from demand, and moving a VM between cgroup
 * "hosts"; see agent.h. */
#include "agent/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int agent_place_plan(const double *demand, const int *host_of, unsigned nr_vms,
		     const struct agent_host *hosts, unsigned nr_hosts, double target,
		     struct agent_move *moves, unsigned max, unsigned *nmoves, char *msg,
		     size_t msglen)
{
	double load[AGENT_MAX_HOSTS] = { 0 };
	bool over[AGENT_MAX_HOSTS] = { false };
	bool stays[AGENT_MAX_VMS];
	unsigned order[AGENT_MAX_VMS], n = 0, nm = 0;
	double missing = 0;

	*nmoves = 0;
	msg[0] = '\0';
	if (nr_hosts == 0 || nr_hosts > AGENT_MAX_HOSTS || nr_vms > AGENT_MAX_VMS ||
	    !(target > 0 && target <= 1)) {
		snprintf(msg, msglen, "placement needs 1..%d hosts and a target in (0, 1]",
			 AGENT_MAX_HOSTS);
		return -EINVAL;
	}
	for (unsigned i = 0; i < nr_vms; i++)
		if (host_of[i] >= 0 && host_of[i] < (int)nr_hosts)
			load[host_of[i]] += demand[i];
	for (unsigned h = 0; h < nr_hosts; h++)
		over[h] = load[h] > hosts[h].capacity_cpus + 1e-9;
	/* What stays: everything on hosts that fit; on an overloaded host
	 * the smallest VMs up to target x capacity. */
	for (unsigned h = 0; h < nr_hosts; h++)
		load[h] = over[h] ? 0 : load[h];
	for (unsigned i = 0; i < nr_vms; i++)
		stays[i] = host_of[i] >= 0 && host_of[i] < (int)nr_hosts && !over[host_of[i]];
	for (;;) {
		int best = -1;
		for (unsigned i = 0; i < nr_vms; i++) {
			int h = host_of[i];
			if (stays[i] || h < 0 || h >= (int)nr_hosts || !over[h])
				continue;
			if (load[h] + demand[i] > target * hosts[h].capacity_cpus + 1e-9)
				continue;
			if (best < 0 || demand[i] < demand[best])
				best = (int)i;
		}
		if (best < 0)
			break;
		stays[best] = true;
		load[host_of[best]] += demand[best];
	}
	for (unsigned i = 0; i < nr_vms; i++)
		if (!stays[i])
			order[n++] = i;
	/* Largest first, onto the host with the most room left. */
	for (unsigned a = 1; a < n; a++)
		for (unsigned b = a; b > 0 && demand[order[b]] > demand[order[b - 1]]; b--) {
			unsigned t = order[b];
			order[b] = order[b - 1];
			order[b - 1] = t;
		}
	for (unsigned k = 0; k < n; k++) {
		unsigned i = order[k];
		int dest = -1;
		double room = 0;
		for (unsigned h = 0; h < nr_hosts; h++) {
			double r = target * hosts[h].capacity_cpus - load[h];
			if ((int)h != host_of[i] && r >= demand[i] - 1e-9 && (dest < 0 || r > room)) {
				dest = (int)h;
				room = r;
			}
		}
		if (dest < 0) {
			missing += demand[i];
			continue;
		}
		load[dest] += demand[i];
		if (nm < max)
			moves[nm++] = (struct agent_move){ .vm = i, .from = host_of[i], .to = dest };
	}
	*nmoves = nm;
	if (missing > 0) {
		snprintf(msg, msglen, "%.2f CPUs of demand fit on no host (at %.0f %% of capacity): "
			 "add hosts or capacity", missing, target * 100);
		return -ENOSPC;
	}
	return (int)nm;
}

int agent_host_of(const struct agent_cgroup *cg, const struct agent_host *hosts, unsigned n,
		  pid_t pid)
{
	char path[AGENT_PATH_MAX * 2 + 32];

	for (unsigned h = 0; h < n; h++) {
		snprintf(path, sizeof(path), "%s/%s/%s/cgroup.procs", cg->root, cg->parent,
			 hosts[h].name);
		FILE *f = fopen(path, "re");
		long v;
		if (!f)
			continue;
		while (fscanf(f, "%ld", &v) == 1) {
			if (v == pid) {
				fclose(f);
				return (int)h;
			}
		}
		fclose(f);
	}
	return -1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* PUT/PATCH with a JSON body over the unix socket; the HTTP status. */
static int http_unix_send(const char *sock, const char *method, const char *path,
			  const char *body)
{
	char req[4096];

	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
		 method, path, strlen(body), body);
	return agent_http_raw(sock, req, NULL);
}

int agent_move_vm(const struct agent_place_ctx *ctx, struct agent_vm *vm, const char *dest,
		  char *err, size_t errlen)
{
	char state[AGENT_PATH_MAX + 96], mem[AGENT_PATH_MAX + 96], log[AGENT_PATH_MAX + 96];
	char body[2 * (AGENT_PATH_MAX + 96) + 128], procs[AGENT_PATH_MAX * 2 + 64];
	long stamp = (long)time(NULL);
	int src = (int)vm->pid;
	int st;

	/* Unique per source process: a restored source maps its own memory
	 * file, which its snapshot must never overwrite. */
	snprintf(state, sizeof(state), "%s/%s.%ld.%d.state", ctx->state_dir, vm->name, stamp, src);
	snprintf(mem, sizeof(mem), "%s/%s.%ld.%d.mem", ctx->state_dir, vm->name, stamp, src);
	snprintf(log, sizeof(log), "%s/%s.log", ctx->state_dir, vm->name);
	snprintf(procs, sizeof(procs), "%s/%s/%s/cgroup.procs", ctx->cg->root, ctx->cg->parent, dest);
	if (vm->pid <= 0) {
		snprintf(err, errlen, "VM %s: its pid is unknown", vm->name);
		return -ESRCH;
	}
	st = http_unix_send(vm->sock, "PATCH", "/vm", "{\"state\": \"Paused\"}");
	if (st != 204) {
		snprintf(err, errlen, "VM %s: pausing failed (HTTP %d)", vm->name, st);
		return -EIO;
	}
	snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}", state,
		 mem);
	st = http_unix_send(vm->sock, "PUT", "/snapshot/create", body);
	if (st != 204) {
		http_unix_send(vm->sock, "PATCH", "/vm", "{\"state\": \"Resumed\"}");
		snprintf(err, errlen, "VM %s: snapshot failed (HTTP %d); resumed where it was",
			 vm->name, st);
		return -EIO;
	}
	/* Stop the source; it removes its API socket on the way out, which
	 * the restored VM then takes over. */
	kill(vm->pid, SIGTERM);
	for (int i = 0; i < 500 && access(vm->sock, F_OK) == 0; i++)
		sleep_ms(10);
	if (access(vm->sock, F_OK) == 0) {
		snprintf(err, errlen, "VM %s: the source did not stop; its snapshot is in %s",
			 vm->name, state);
		return -ETIMEDOUT;
	}
	pid_t child = fork();
	if (child < 0) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		return -errno;
	}
	if (child == 0) {
		/* Into the destination host's cgroup before exec, so every
		 * thread of the restored monitor starts there. */
		char pid[24];
		int fd = open(procs, O_WRONLY | O_CLOEXEC);
		int n = snprintf(pid, sizeof(pid), "%d", (int)getpid());
		if (fd < 0 || write(fd, pid, (size_t)n) != n)
			_exit(126);
		close(fd);
		setsid();
		int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(126);
		const char *argv[12] = { ctx->mote_bin, "--restore", state, "--mem", mem, "--resume",
					 "--api-sock", vm->sock };
		int a = 8;
		if (ctx->demand_args) {
			argv[a++] = "--demand";
			argv[a++] = ctx->demand_args;
		}
		argv[a] = NULL;
		execv(ctx->mote_bin, (char *const *)argv);
		_exit(127);
	}
	/* The restored VM runs on after the agent exits (it is reparented). */
	char *resp;
	for (int i = 0; i < 500; i++) {
		st = agent_http_unix(vm->sock, "/", &resp);
		free(resp);
		if (st == 200)
			break;
		int wst;
		if (waitpid(child, &wst, WNOHANG) == child) {
			snprintf(err, errlen, "VM %s: the restored monitor exited (status %d); see %s",
				 vm->name, WIFEXITED(wst) ? WEXITSTATUS(wst) : 128 + WTERMSIG(wst), log);
			return -EIO;
		}
		sleep_ms(10);
	}
	if (st != 200) {
		snprintf(err, errlen, "VM %s: the restored monitor never answered; see %s", vm->name,
			 log);
		return -ETIMEDOUT;
	}
	vm->pid = child;
	return 0;
}
