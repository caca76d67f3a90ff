/* mote: one process, one KVM microVM. */
#include <errno.h>
#include <malloc.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <jansson.h>

#include "api/api.h"
#include "snapshot/snapshot.h"
#include "vmm/controller.h"
#include "vmm/log.h"
#include "vmm/seccomp.h"
#include "vmm/loop.h"
#include "vmm/vm.h"

#ifndef MOTE_VERSION
#define MOTE_VERSION "0.1.0"
#endif

#define DEFAULT_MEM_MIB 128
#define MIN_MEM_MIB VM_MIN_MEM_MIB
#define MAX_MEM_MIB VM_MAX_MEM_MIB
#define DEFAULT_ID "anonymous-instance"
#define CONFIG_FILE_MAX (1 << 20)

/* What the command line says beyond the VM configuration. */
struct run_opts {
	const char *api_sock;
	const char *config_file;
	const char *id;
	size_t max_payload;
	bool no_api;
	bool vm_opts;   /* a --kernel/--vcpus/... option was given */
	const char *restore_state; /* --restore: a snapshot's state file */
	const char *restore_mem;   /* --mem: its memory file */
	bool resume;               /* --resume */
	bool standby;              /* --standby */
	bool track_dirty_pages;    /* --track-dirty-pages */
	const char *prefetch;      /* --prefetch FILE */
	const char *record_ws;     /* --record-working-set FILE */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mote --kernel PATH [options]\n"
		"       mote --api-sock PATH [--id ID] [--boot-timer] [--config-file FILE]\n"
		"       mote --no-api --config-file FILE [--boot-timer]\n"
		"\n"
		"Runs one KVM microVM and exits when the guest does.\n"
		"\n"
		"  --kernel PATH          vmlinux/PVH ELF or bzImage to boot\n"
		"  --initrd PATH          initial ramdisk\n"
		"  --cmdline STR          kernel command line\n"
		"  --mem-mib N            guest RAM in MiB (default %d)\n"
		"  --vcpus N              number of vCPUs (default 1, max %d)\n"
		"  --boot-protocol P      auto (default: PVH if the ELF has the note), pvh, linux\n"
		"  --cpu-template T       host (default) or minimal (hides XSAVE/AVX, POPCNT,\n"
		"                         CX16, RDRAND/RDSEED, SMAP, FSGSBASE, RDPID, PCID/INVPCID)\n"
		"  --irqchip M            split (default: IOAPIC in mote, LAPICs in KVM, no PIC/PIT;\n"
		"                         Linux needs kvmclock + the TSC-deadline timer) or kernel\n"
		"                         (KVM's PIC, IOAPIC and PIT; slower VM create and exit)\n"
		"  --drive SPEC           attach a virtio-blk drive (repeatable, up to %d):\n"
		"                         path=FILE[,ro][,id=ID][,root][,bw=BYTES_PER_S][,iops=N]\n"
		"                         root adds root=/dev/vdX (in --drive order) to the cmdline\n"
		"  --net SPEC             attach a virtio-net interface on a host TAP (repeatable,\n"
		"                         up to %d): tap=NAME[,mac=MAC][,id=ID][,mtu=N]\n"
		"                         [,rx-bw=BYTES_PER_S][,tx-bw=BYTES_PER_S][,rx-ops=N][,tx-ops=N]\n"
		"                         (MAC default: derived from --id and the interface id)\n"
		"  --vsock cid=N,uds=PATH attach a virtio-vsock device: guest CID N (3 and up);\n"
		"                         host programs connect to PATH and send 'CONNECT <port>\\n',\n"
		"                         guest connections to CID 2 port P go to PATH_P\n"
		"  --boot-timer           enable the boot-timer device (write 123 at 0xc0000000)\n"
		"                         and log exec->first KVM_RUN and exec->boot-timer times\n"
		"  --demand SETTINGS      demand metrics (GET /demand): period-ms=N (1000),\n"
		"                         window=N (10), alpha=X (0.3), wss=on|off|dirty-log\n"
		"                         (dirty-log: a restored clone's working set),\n"
		"                         wss-samples=N|all (1024), wss-period-ms=N (1000),\n"
		"                         flush-ms=N (metrics file, 60000)\n"
		"  --log-level L          error, warn, info (default) or debug\n"
		"  --no-seccomp           run without the per-thread seccomp filters (debugging)\n"
		"  --seccomp-debug        a forbidden syscall prints its name before exit 159\n"
		"                         (default: the kernel kills the process with SIGSYS)\n"
		"  --print-seccomp        list each thread's allowed syscalls and exit\n"
		"  --api-sock PATH        serve the HTTP API (Firecracker's) on this unix socket;\n"
		"                         without --kernel/--config-file the VM waits for\n"
		"                         PUT /actions InstanceStart\n"
		"  --id ID                instance id reported by GET / (default %s)\n"
		"  --config-file FILE     boot the VM described by FILE (the JSON of\n"
		"                         GET /vm/config), with or without the API\n"
		"  --no-api               no API socket (needs --kernel or --config-file)\n"
		"  --restore STATE --mem FILE [--resume | --standby]\n"
		"                         restore a snapshot (PUT /snapshot/create wrote it)\n"
		"                         instead of booting; without --resume it stays paused\n"
		"                         until PATCH /vm Resumed\n"
		"  --standby              with --restore (API or --no-api): restore everything,\n"
		"                         then wait with the vCPUs parked, costing no CPU, until\n"
		"                         SIGUSR2 (or PATCH /vm Resumed) resumes it as --resume\n"
		"  --track-dirty-pages    log the pages the guest writes (Diff snapshots)\n"
		"  --record-working-set FILE\n"
		"                         with --restore: at exit, write the guest pages the VM\n"
		"                         touched to FILE (a working-set record)\n"
		"  --prefetch FILE        with --restore: map the pages FILE lists before the\n"
		"                         vCPUs start (one batch instead of a fault per page)\n"
		"       mote snapshot-merge BASE_MEM DIFF_MEM OUT_MEM\n"
		"                         a Diff snapshot's memory file merged onto its base's:\n"
		"                         OUT_MEM goes with the Diff's state file\n"
		"  --http-api-max-payload-size N\n"
		"                         largest request body in bytes (default %d)\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n"
		"\n"
		"SIGUSR1 prints every vCPU's registers to stderr; SIGUSR2 ends --standby;\n"
		"SIGTERM/SIGINT stop the VM.\n"
		"\n"
		"Exit status: the guest's debug-exit code (port 0xf4); 0 when the guest\n"
		"resets or powers off; 64 bad usage, 65 bad kernel/initrd, 66 missing file,\n"
		"69 KVM unavailable, 70 internal error, 80 guest crash (triple fault,\n"
		"emulation failure), 128+N killed by signal N (159: a seccomp filter\n"
		"stopped a forbidden syscall).\n",
		DEFAULT_MEM_MIB, VM_MAX_VCPUS, BLK_MAX_DRIVES, NET_MAX_IFACES, DEFAULT_ID, API_DEFAULT_MAX_PAYLOAD);
}

static int parse_uint(const char *opt, const char *s, unsigned long min, unsigned long max,
		      unsigned long *out)
{
	char *end;

	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || end == s || s[0] == '-' || v < min || v > max) {
		log_error("%s: '%s' is not a number between %lu and %lu", opt, s, min, max);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

enum {
	OPT_KERNEL = 256, OPT_INITRD, OPT_CMDLINE, OPT_MEM, OPT_VCPUS, OPT_BOOT_PROTO,
	OPT_CPU_TEMPLATE, OPT_IRQCHIP, OPT_BOOT_TIMER, OPT_LOG_LEVEL, OPT_DRIVE, OPT_NO_SECCOMP,
	OPT_SECCOMP_DEBUG, OPT_PRINT_SECCOMP, OPT_API_SOCK, OPT_ID, OPT_CONFIG_FILE, OPT_NO_API,
	OPT_MAX_PAYLOAD, OPT_NET, OPT_VSOCK,
	OPT_DEMAND,
};

enum { OPT_RESTORE = 512, OPT_MEM_FILE, OPT_RESUME, OPT_TRACK_DIRTY, OPT_PREFETCH,
       OPT_RECORD_WS, OPT_STANDBY };

static const struct option long_opts[] = {
	{ "restore", required_argument, NULL, OPT_RESTORE },
	{ "mem", required_argument, NULL, OPT_MEM_FILE },
	{ "resume", no_argument, NULL, OPT_RESUME },
	{ "standby", no_argument, NULL, OPT_STANDBY },
	{ "track-dirty-pages", no_argument, NULL, OPT_TRACK_DIRTY },
	{ "prefetch", required_argument, NULL, OPT_PREFETCH },
	{ "record-working-set", required_argument, NULL, OPT_RECORD_WS },
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "mem-mib", required_argument, NULL, OPT_MEM },
	{ "vcpus", required_argument, NULL, OPT_VCPUS },
	{ "boot-protocol", required_argument, NULL, OPT_BOOT_PROTO },
	{ "cpu-template", required_argument, NULL, OPT_CPU_TEMPLATE },
	{ "irqchip", required_argument, NULL, OPT_IRQCHIP },
	{ "boot-timer", no_argument, NULL, OPT_BOOT_TIMER },
	{ "drive", required_argument, NULL, OPT_DRIVE },
	{ "net", required_argument, NULL, OPT_NET },
	{ "demand", required_argument, NULL, OPT_DEMAND },
	{ "vsock", required_argument, NULL, OPT_VSOCK },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "no-seccomp", no_argument, NULL, OPT_NO_SECCOMP },
	{ "seccomp-debug", no_argument, NULL, OPT_SECCOMP_DEBUG },
	{ "print-seccomp", no_argument, NULL, OPT_PRINT_SECCOMP },
	{ "api-sock", required_argument, NULL, OPT_API_SOCK },
	{ "id", required_argument, NULL, OPT_ID },
	{ "config-file", required_argument, NULL, OPT_CONFIG_FILE },
	{ "no-api", no_argument, NULL, OPT_NO_API },
	{ "http-api-max-payload-size", required_argument, NULL, OPT_MAX_PAYLOAD },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

static int check_id(const char *id)
{
	size_t len = strlen(id);

	if (len == 0 || len > API_ID_MAX) {
		log_error("--id: '%s' must be 1 to %d characters", id, API_ID_MAX);
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		if (!(id[i] >= 'a' && id[i] <= 'z') && !(id[i] >= 'A' && id[i] <= 'Z') &&
		    !(id[i] >= '0' && id[i] <= '9') && id[i] != '-') {
			log_error("--id: '%s' may contain only letters, digits and '-'", id);
			return -1;
		}
	}
	return 0;
}

/* The options that fit together; returns -1 or an exit code. */
static int check_modes(const struct vm_config *cfg, const struct run_opts *o)
{
	if (o->restore_state) {
		if (!o->restore_mem) {
			log_error("--restore needs --mem FILE, the snapshot's memory file");
			return MOTE_EXIT_USAGE;
		}
		if (o->vm_opts || o->config_file) {
			log_error("--restore brings the whole VM from the snapshot: drop --kernel, "
				  "--config-file and the other VM options");
			return MOTE_EXIT_USAGE;
		}
		if (o->standby && o->resume) {
			log_error("--standby and --resume exclude each other: --standby waits for "
				  "SIGUSR2 before it resumes, --resume runs at once");
			return MOTE_EXIT_USAGE;
		}
		if (o->no_api && !o->resume && !o->standby) {
			log_error("--restore without --resume waits for PATCH /vm Resumed: it needs "
				  "the API (--api-sock), or --standby to wait for SIGUSR2");
			return MOTE_EXIT_USAGE;
		}
		return -1;
	}
	if (o->standby) {
		log_error("--standby needs --restore STATE --mem FILE: only a restored VM can "
			  "wait in standby");
		return MOTE_EXIT_USAGE;
	}
	if (o->restore_mem || o->resume || o->prefetch || o->record_ws) {
		log_error("--mem, --resume, --prefetch and --record-working-set go with --restore");
		return MOTE_EXIT_USAGE;
	}
	if (o->no_api && o->api_sock) {
		log_error("--no-api and --api-sock exclude each other");
		return MOTE_EXIT_USAGE;
	}
	if (o->config_file && o->vm_opts) {
		log_error("--config-file describes the whole VM: drop --kernel, --initrd, --cmdline, "
			  "--mem-mib, --vcpus, --cpu-template, --drive, --net and --vsock");
		return MOTE_EXIT_USAGE;
	}
	if (o->no_api && !cfg->kernel_path && !o->config_file) {
		log_error("--no-api needs --kernel PATH or --config-file FILE: without the API "
			  "nothing could configure the VM");
		return MOTE_EXIT_USAGE;
	}
	if (!cfg->kernel_path && !o->config_file && !o->api_sock) {
		log_error("no kernel given: pass --kernel PATH, --config-file FILE or --api-sock PATH "
			  "(see mote --help)");
		return MOTE_EXIT_USAGE;
	}
	return -1;
}

/* Returns -1 to continue, else the process exit code. */
static int parse_args(int argc, char **argv, struct vm_config *cfg, struct run_opts *o)
{
	unsigned long v;
	int c;

	*o = (struct run_opts){ .id = DEFAULT_ID, .max_payload = API_DEFAULT_MAX_PAYLOAD };

	/* cfg comes zeroed (static in main): clearing its 34 KiB here, most
	 * of it drive slots, was 9 stack pages faulted in every start. */
	cfg->mem_bytes = (uint64_t)DEFAULT_MEM_MIB << 20;
	cfg->nr_vcpus = 1;
	cfg->boot_protocol = BOOT_PROTO_AUTO;
	cfg->cpu_template = CPU_TEMPLATE_HOST;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hV", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL:
			cfg->kernel_path = optarg;
			o->vm_opts = true;
			break;
		case OPT_INITRD:
			cfg->initrd_path = optarg;
			o->vm_opts = true;
			break;
		case OPT_CMDLINE:
			cfg->cmdline = optarg;
			o->vm_opts = true;
			break;
		case OPT_API_SOCK:
			o->api_sock = optarg;
			break;
		case OPT_ID:
			if (check_id(optarg))
				return MOTE_EXIT_USAGE;
			o->id = optarg;
			break;
		case OPT_CONFIG_FILE:
			o->config_file = optarg;
			break;
		case OPT_NO_API:
			o->no_api = true;
			break;
		case OPT_MAX_PAYLOAD:
			if (parse_uint("--http-api-max-payload-size", optarg, 64, 64UL << 20, &v))
				return MOTE_EXIT_USAGE;
			o->max_payload = v;
			break;
		case OPT_MEM:
			o->vm_opts = true;
			if (parse_uint("--mem-mib", optarg, MIN_MEM_MIB, MAX_MEM_MIB, &v))
				return MOTE_EXIT_USAGE;
			cfg->mem_bytes = (uint64_t)v << 20;
			break;
		case OPT_VCPUS:
			o->vm_opts = true;
			if (parse_uint("--vcpus", optarg, 1, VM_MAX_VCPUS, &v))
				return MOTE_EXIT_USAGE;
			cfg->nr_vcpus = (unsigned)v;
			break;
		case OPT_BOOT_PROTO:
			if (strcmp(optarg, "auto") == 0)
				cfg->boot_protocol = BOOT_PROTO_AUTO;
			else if (strcmp(optarg, "pvh") == 0)
				cfg->boot_protocol = BOOT_PROTO_PVH;
			else if (strcmp(optarg, "linux") == 0)
				cfg->boot_protocol = BOOT_PROTO_LINUX64;
			else {
				log_error("--boot-protocol: '%s' is not auto, pvh or linux", optarg);
				return MOTE_EXIT_USAGE;
			}
			break;
		case OPT_CPU_TEMPLATE:
			o->vm_opts = true;
			if (cpu_template_parse(optarg, &cfg->cpu_template)) {
				log_error("--cpu-template: '%s' is not host or minimal", optarg);
				return MOTE_EXIT_USAGE;
			}
			break;
		case OPT_IRQCHIP:
			if (strcmp(optarg, "split") == 0)
				cfg->irqchip = IRQCHIP_SPLIT;
			else if (strcmp(optarg, "kernel") == 0)
				cfg->irqchip = IRQCHIP_KERNEL;
			else {
				log_error("--irqchip: '%s' is not split or kernel", optarg);
				return MOTE_EXIT_USAGE;
			}
			break;
		case OPT_NO_SECCOMP:
			cfg->seccomp = SECCOMP_OFF;
			break;
		case OPT_SECCOMP_DEBUG:
			cfg->seccomp = SECCOMP_TRAP;
			break;
		case OPT_PRINT_SECCOMP:
			return seccomp_print(stdout) ? MOTE_EXIT_INTERNAL : MOTE_EXIT_OK;
		case OPT_BOOT_TIMER:
			cfg->boot_timer = true;
			break;
		case OPT_DRIVE: {
			char err[256];
			o->vm_opts = true;
			if (cfg->nr_drives == BLK_MAX_DRIVES) {
				log_error("--drive: at most %d drives per VM", BLK_MAX_DRIVES);
				return MOTE_EXIT_USAGE;
			}
			struct blk_config *dc = &cfg->drives[cfg->nr_drives];
			if (blk_parse_drive_arg(optarg, dc, err, sizeof(err))) {
				log_error("%s", err);
				return MOTE_EXIT_USAGE;
			}
			if (!dc->id[0])
				snprintf(dc->id, sizeof(dc->id), "drive%u", cfg->nr_drives);
			cfg->nr_drives++;
			break;
		}
		case OPT_NET: {
			char err[256];
			o->vm_opts = true;
			if (cfg->nr_nets == NET_MAX_IFACES) {
				log_error("--net: at most %d network interfaces per VM", NET_MAX_IFACES);
				return MOTE_EXIT_USAGE;
			}
			struct net_config *nc = &cfg->nets[cfg->nr_nets];
			if (net_parse_arg(optarg, nc, err, sizeof(err))) {
				log_error("%s", err);
				return MOTE_EXIT_USAGE;
			}
			if (!nc->id[0])
				snprintf(nc->id, sizeof(nc->id), "net%u", cfg->nr_nets);
			for (unsigned i = 0; i < cfg->nr_nets; i++) {
				if (!strcmp(cfg->nets[i].id, nc->id) || !strcmp(cfg->nets[i].tap, nc->tap)) {
					log_error("--net: interface id '%s' and TAP '%s' must each be used "
						  "once", nc->id, nc->tap);
					return MOTE_EXIT_USAGE;
				}
			}
			cfg->nr_nets++;
			break;
		}
		case OPT_VSOCK: {
			char err[256];
			o->vm_opts = true;
			if (cfg->has_vsock) {
				log_error("--vsock: a VM has at most one vsock device");
				return MOTE_EXIT_USAGE;
			}
			if (vsock_parse_arg(optarg, &cfg->vsock, err, sizeof(err))) {
				log_error("%s", err);
				return MOTE_EXIT_USAGE;
			}
			cfg->has_vsock = true;
			break;
		}
		case OPT_DEMAND: {
			char err[256];
			if (metrics_parse_arg(optarg, &cfg->metrics, err, sizeof(err)) ||
			    metrics_config_finish(&cfg->metrics, err, sizeof(err))) {
				log_error("%s", err);
				return MOTE_EXIT_USAGE;
			}
			break;
		}
		case OPT_LOG_LEVEL:
			if (log_parse_level(optarg, &log_max_level)) {
				log_error("--log-level: '%s' is not error, warn, info or debug", optarg);
				return MOTE_EXIT_USAGE;
			}
			break;
		case OPT_RESTORE:
			o->restore_state = optarg;
			break;
		case OPT_MEM_FILE:
			o->restore_mem = optarg;
			break;
		case OPT_RESUME:
			o->resume = true;
			break;
		case OPT_STANDBY:
			o->standby = true;
			break;
		case OPT_PREFETCH:
			o->prefetch = optarg;
			break;
		case OPT_RECORD_WS:
			o->record_ws = optarg;
			break;
		case OPT_TRACK_DIRTY:
			o->track_dirty_pages = true;
			cfg->track_dirty_pages = true;
			break;
		case 'h':
			usage(stdout);
			return MOTE_EXIT_OK;
		case 'V':
			printf("mote %s\n", MOTE_VERSION);
			return MOTE_EXIT_OK;
		default:
			if (optopt)
				log_error("option -%c is unknown or needs a value; see mote --help", optopt);
			else
				log_error("option '%s' is unknown or needs a value; see mote --help",
					  argv[optind - 1]);
			return MOTE_EXIT_USAGE;
		}
	}
	if (optind < argc) {
		log_error("unexpected argument '%s'; see mote --help", argv[optind]);
		return MOTE_EXIT_USAGE;
	}
	return check_modes(cfg, o);
}

static void on_signal(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct signalfd_siginfo si;
	char why[64];

	(void)loop;
	(void)events;
	(void)opaque;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGUSR1) {
		controller_request_dump();
		return;
	}
	if (si.ssi_signo == SIGUSR2) {
		controller_standby_resume();
		return;
	}
	snprintf(why, sizeof(why), "received signal %s", strsignal((int)si.ssi_signo));
	controller_request_exit(128 + (int)si.ssi_signo, why);
}

/* --config-file: the same parser and handlers as the API's PUT bodies. */
static int apply_config_file(const char *path)
{
	struct api_request *reqs = NULL;
	size_t nr = 0, len;
	char err[512];
	int ret = MOTE_EXIT_USAGE;

	FILE *f = fopen(path, "re");
	if (!f) {
		log_error("cannot open --config-file '%s': %s", path, strerror(errno));
		return MOTE_EXIT_NOINPUT;
	}
	char *json = malloc(CONFIG_FILE_MAX + 1);
	len = json ? fread(json, 1, CONFIG_FILE_MAX + 1, f) : 0;
	fclose(f);
	if (!json || len > CONFIG_FILE_MAX) {
		log_error("--config-file '%s': %s", path,
			  json ? "larger than 1 MiB" : "out of memory");
		free(json);
		return MOTE_EXIT_USAGE;
	}
	if (api_parse_vm_config(json, len, &reqs, &nr, err, sizeof(err))) {
		log_error("--config-file '%s': %s", path, err);
		goto out;
	}
	for (size_t i = 0; i < nr; i++) {
		struct api_response resp = { 0 };

		controller_handle(&reqs[i], &resp);
		if (resp.status >= 400) {
			json_t *o = resp.body ? json_loads(resp.body, 0, NULL) : NULL;
			const char *msg = json_string_value(json_object_get(o, "fault_message"));
			log_error("--config-file '%s': %s", path, msg ? msg : "rejected");
			json_decref(o);
			api_response_free(&resp);
			goto out;
		}
		api_response_free(&resp);
	}
	ret = 0;
out:
	free(reqs);
	free(json);
	return ret;
}

static int run(const struct vm_config *cfg, const struct run_opts *o)
{
	struct api_server *api = NULL;
	struct event_loop *loop = NULL;
	sigset_t sigs;
	int sfd = -1;
	int ret;

	/* Termination signals become events on the VMM thread; the API and
	 * vCPU threads inherit the blocked mask so they never see them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGQUIT);
	sigaddset(&sigs, SIGUSR1);
	sigaddset(&sigs, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	log_debug("options parsed");

	/* The socket first: a launcher may connect as soon as it exists. */
	if (o->api_sock) {
		char err[256];
		struct api_server_config acfg = {
			.sock_path = o->api_sock, .max_payload = o->max_payload,
			.handler = controller_api_handler,
		};
		ret = api_server_open(&api, &acfg, err, sizeof(err));
		if (ret) {
			log_error("%s", err);
			return ret == -ENAMETOOLONG ? MOTE_EXIT_USAGE : MOTE_EXIT_NOINPUT;
		}
		log_info("API socket ready after %llu us since exec",
			 (unsigned long long)time_since_exec_us());
	}
	loop = loop_create();
	if (!loop) {
		log_error("cannot create the event loop: %s", strerror(errno));
		ret = MOTE_EXIT_INTERNAL;
		goto out;
	}
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || loop_add(loop, sfd, EPOLLIN, on_signal, NULL) ||
	    controller_init(loop, cfg, o->id, o->no_api)) {
		log_error("event loop set-up failed: %s", strerror(errno));
		ret = MOTE_EXIT_INTERNAL;
		goto out;
	}
	if (o->config_file) {
		ret = apply_config_file(o->config_file);
		if (ret)
			goto out;
	}
	/* Created before the VM exists, so it inherits no seccomp filter
	 * from this thread (see controller_boot); it installs its own, which
	 * is compiled here. */
	if (api && seccomp_prepare(cfg->seccomp)) {
		log_error("cannot build the seccomp filters");
		ret = MOTE_EXIT_INTERNAL;
		goto out;
	}
	if (api && (ret = api_server_start(api))) {
		log_error("cannot start the API thread: %s", strerror(-ret));
		ret = MOTE_EXIT_INTERNAL;
		goto out;
	}
	/* A complete configuration boots at once; otherwise the API's
	 * InstanceStart does, from inside the loop. */
	if (o->restore_state) {
		struct controller_restore_opts ro = {
			.state_path = o->restore_state, .mem_path = o->restore_mem, .resume = o->resume,
			.standby = o->standby,
			.track_dirty_pages = o->track_dirty_pages, .prefetch_path = o->prefetch,
			.record_ws_path = o->record_ws,
		};
		ret = controller_restore(&ro);
		if (ret)
			goto out;
	} else if (controller_has_boot_source()) {
		ret = controller_boot();
		if (ret)
			goto out;
	}
	ret = loop_run(loop);
	if (ret)
		log_error("event loop failed: %s", strerror(-ret));
	ret = controller_exit_code();
out:
	controller_shutdown();
	api_server_stop(api);
	if (sfd >= 0)
		close(sfd);
	loop_destroy(loop);
	return ret;
}

/* mote snapshot-merge BASE_MEM DIFF_MEM OUT_MEM */
static int snapshot_merge_main(int argc, char **argv)
{
	char err[512];

	if (argc != 4) {
		log_error("usage: mote snapshot-merge BASE_MEM DIFF_MEM OUT_MEM");
		return MOTE_EXIT_USAGE;
	}
	if (snapshot_merge(argv[1], argv[2], argv[3], err, sizeof(err))) {
		log_error("snapshot-merge: %s", err);
		return MOTE_EXIT_BAD_IMAGE;
	}
	return MOTE_EXIT_OK;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "snapshot-merge"))
		return snapshot_merge_main(argc - 1, argv + 1);
	static struct vm_config cfg; /* zero: parse_args sets the defaults */
	struct run_opts opts;
	int ret = parse_args(argc, argv, &cfg, &opts);

	if (ret >= 0)
		return ret;
	/* One malloc arena for every thread: the API thread then needs no
	 * arena mmap/mprotect in its seccomp filter, and mote allocates
	 * little enough that contention does not matter. */
	mallopt(M_ARENA_MAX, 1);
	return run(&cfg, &opts);
}
