/* mote-fnd: the serverless launcher daemon (see launcher/README.md). */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "launcher/fnd.h"
#include "vmm/log.h"

#define DEFAULT_SOCK "/tmp/mote-fnd.sock"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mote-fnd [options]\n"
		"\n"
		"Serves the functions API (PUT/GET/DELETE /functions/NAME, POST\n"
		"/functions/NAME/invoke, GET /metrics) over a unix socket and runs one mote\n"
		"microVM per function instance: the first boots and is snapshotted, later\n"
		"ones are clones restored from that snapshot.\n"
		"\n"
		"  --sock PATH             API socket (default $MOTE_FND_SOCK or %s)\n"
		"  --state-dir DIR         snapshots, instance dirs, jails, logs (default\n"
		"                          /var/lib/mote-fnd as root, else /tmp/mote-fnd-UID)\n"
		"  --mote PATH             mote binary (default: next to mote-fnd)\n"
		"  --jailer PATH           mote-jailer binary (default: next to mote-fnd)\n"
		"  --no-jail               run monitors unjailed (default when not root)\n"
		"  --uid N, --gid N        ids of jailed monitors (default 10123)\n"
		"  --max-instances N       host cap on live VMs (default from pid_max)\n"
		"  --max-mem-mib N         cap on the sum of guest RAM (default: none)\n"
		"  --min-free-mib N        refuse new VMs below this MemAvailable (default 512)\n"
		"  --max-queue N           waiting invocations per function (default 4096)\n"
		"  --cpu-overcommit X      refuse new VMs while the ready ones demand more than\n"
		"                          X times the host's CPUs (default 4; 0: off)\n"
		"  --cpu-capacity N        CPUs the VMs may use (default: the online CPUs)\n"
		"  --boot-timeout-ms N     cold boot to ready (default 20000)\n"
		"  --restore-timeout-ms N  clone restore to first stream (default 5000)\n"
		"  --mote-log-level L      the monitors' --log-level (default warn)\n"
		"  --keep-logs             keep every instance's log (default: failed ones only)\n"
		"  --pivot-root            jail with pivot_root, not mote-jailer --move-root\n"
		"                          (pivot_root's cost grows with the host's threads)\n"
		"  --no-tmpfs              jailed: keep jails and snapshots on the state\n"
		"                          directory's file system, not on a tmpfs mounted there\n"
		"  --log-level L           error, warn, info (default), debug\n"
		"  -h, --help\n",
		DEFAULT_SOCK);
}

static unsigned parse_u(const char *opt, const char *s, unsigned long max)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || !*s || v > max) {
		fprintf(stderr, "mote-fnd: %s: '%s' is not a number up to %lu\n", opt, s, max);
		exit(64);
	}
	return (unsigned)v;
}

static unsigned default_max_instances(void)
{
	/* Every monitor is a process with a VMM and a vCPU thread (and the
	 * kernel's io_uring workers): keep well inside pid_max. */
	FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
	unsigned long pid_max = 32768;
	if (f) {
		if (fscanf(f, "%lu", &pid_max) != 1)
			pid_max = 32768;
		fclose(f);
	}
	unsigned long n = pid_max > 4096 ? (pid_max - 2048) / 3 : 100;
	return n > 20000 ? 20000 : (unsigned)n;
}

static double parse_d(const char *opt, const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || !(v >= 0) || v > 1e6) {
		fprintf(stderr, "mote-fnd: %s: '%s' is not a number from 0 to 1e6\n", opt, s);
		exit(64);
	}
	return v;
}

int main(int argc, char **argv)
{
	static char self_dir[PATH_MAX], mote_def[PATH_MAX + 8], jailer_def[PATH_MAX + 16],
		state_def[64];
	struct fnd_config cfg = {
		.uid = 10123, .gid = 10123,
		.boot_timeout_ms = 20000, .restore_timeout_ms = 5000,
		.mote_log_level = "warn",
		.limits = { .min_free_mib = 512, .max_queue = 4096 },
	};
	bool no_jail = false;
	enum { O_SOCK = 256, O_STATE, O_MOTE, O_JAILER, O_NOJAIL, O_UID, O_GID, O_MAXI, O_MAXMEM,
	       O_MINFREE, O_MAXQ, O_BOOTTO, O_RESTTO, O_MLOG, O_KEEP, O_LOG, O_NOTMPFS, O_PIVOT,
	       O_CPUOVER, O_CPUCAP };
	static const struct option opts[] = {
		{ "sock", 1, NULL, O_SOCK }, { "state-dir", 1, NULL, O_STATE },
		{ "mote", 1, NULL, O_MOTE }, { "jailer", 1, NULL, O_JAILER },
		{ "no-jail", 0, NULL, O_NOJAIL }, { "uid", 1, NULL, O_UID }, { "gid", 1, NULL, O_GID },
		{ "max-instances", 1, NULL, O_MAXI }, { "max-mem-mib", 1, NULL, O_MAXMEM },
		{ "min-free-mib", 1, NULL, O_MINFREE }, { "max-queue", 1, NULL, O_MAXQ },
		{ "boot-timeout-ms", 1, NULL, O_BOOTTO }, { "restore-timeout-ms", 1, NULL, O_RESTTO },
		{ "mote-log-level", 1, NULL, O_MLOG }, { "keep-logs", 0, NULL, O_KEEP },
		{ "pivot-root", 0, NULL, O_PIVOT },
		{ "log-level", 1, NULL, O_LOG }, { "no-tmpfs", 0, NULL, O_NOTMPFS },
		{ "cpu-overcommit", 1, NULL, O_CPUOVER }, { "cpu-capacity", 1, NULL, O_CPUCAP },
		{ "help", 0, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	int c;

	cfg.sock_path = getenv("MOTE_FND_SOCK") ? getenv("MOTE_FND_SOCK") : DEFAULT_SOCK;
	cfg.limits.max_instances = default_max_instances();
	cfg.limits.cpu_overcommit = 4;
	cfg.limits.cpu_capacity = (double)sysconf(_SC_NPROCESSORS_ONLN);
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_SOCK: cfg.sock_path = optarg; break;
		case O_STATE: cfg.state_dir = optarg; break;
		case O_MOTE: cfg.mote_bin = optarg; break;
		case O_JAILER: cfg.jailer_bin = optarg; break;
		case O_NOJAIL: no_jail = true; break;
		case O_UID: cfg.uid = parse_u("--uid", optarg, 0x7fffffff); break;
		case O_GID: cfg.gid = parse_u("--gid", optarg, 0x7fffffff); break;
		case O_MAXI: cfg.limits.max_instances = parse_u("--max-instances", optarg, 100000); break;
		case O_MAXMEM: cfg.limits.max_mem_mib = parse_u("--max-mem-mib", optarg, 1u << 30); break;
		case O_MINFREE: cfg.limits.min_free_mib = parse_u("--min-free-mib", optarg, 1u << 30); break;
		case O_MAXQ: cfg.limits.max_queue = parse_u("--max-queue", optarg, 1000000); break;
		case O_BOOTTO: cfg.boot_timeout_ms = parse_u("--boot-timeout-ms", optarg, 600000); break;
		case O_RESTTO: cfg.restore_timeout_ms = parse_u("--restore-timeout-ms", optarg, 600000); break;
		case O_MLOG: cfg.mote_log_level = optarg; break;
		case O_KEEP: cfg.keep_logs = true; break;
		case O_PIVOT: cfg.pivot_root = true; break;
		case O_NOTMPFS: cfg.no_tmpfs = true; break;
		case O_CPUOVER: cfg.limits.cpu_overcommit = parse_d("--cpu-overcommit", optarg); break;
		case O_CPUCAP: cfg.limits.cpu_capacity = parse_d("--cpu-capacity", optarg); break;
		case O_LOG: {
			enum log_level l;
			if (log_parse_level(optarg, &l)) {
				fprintf(stderr, "mote-fnd: --log-level: '%s' is not error/warn/info/debug\n",
					optarg);
				return 64;
			}
			log_max_level = l;
			break;
		}
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 64;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 64;
	}
	const char *dir = ".";
	if (realpath("/proc/self/exe", self_dir))
		dir = dirname(self_dir);
	snprintf(mote_def, sizeof(mote_def), "%s/mote", dir);
	snprintf(jailer_def, sizeof(jailer_def), "%s/mote-jailer", dir);
	if (!cfg.mote_bin)
		cfg.mote_bin = mote_def;
	if (!cfg.jailer_bin)
		cfg.jailer_bin = jailer_def;
	if (!cfg.state_dir) {
		if (geteuid() == 0)
			snprintf(state_def, sizeof(state_def), "/var/lib/mote-fnd");
		else
			snprintf(state_def, sizeof(state_def), "/tmp/mote-fnd-%u", (unsigned)geteuid());
		cfg.state_dir = state_def;
	}
	cfg.jail = !no_jail && geteuid() == 0;
	if (!no_jail && geteuid() != 0)
		log_warn("not root: monitors run unjailed (mote-jailer needs root)");
	if (access(cfg.mote_bin, X_OK) || (cfg.jail && access(cfg.jailer_bin, X_OK))) {
		fprintf(stderr, "mote-fnd: cannot run '%s'; use --mote/--jailer\n",
			access(cfg.mote_bin, X_OK) ? cfg.mote_bin : cfg.jailer_bin);
		return 66;
	}
	/* Streams to VMs and clients are fds: take all the kernel allows. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		cfg.limits.max_fds = rl.rlim_cur > 256 ? (unsigned)(rl.rlim_cur - 64) : 192;
	} else {
		cfg.limits.max_fds = 960;
	}
	if (cfg.limits.max_fds > 1000000)
		cfg.limits.max_fds = 1000000;

	struct fnd *d;
	char err[512];
	if (fnd_create(&d, &cfg, err, sizeof(err))) {
		fprintf(stderr, "mote-fnd: %s\n", err);
		return 1;
	}
	int ret = fnd_run(d);
	fnd_destroy(d);
	return ret ? 1 : 0;
}
