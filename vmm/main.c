/* mote: one process, one KVM microVM. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "vmm/console.h"
#include "vmm/log.h"
#include "vmm/loop.h"
#include "vmm/vm.h"

#ifndef MOTE_VERSION
#define MOTE_VERSION "0.1.0"
#endif

#define DEFAULT_MEM_MIB 128
#define MIN_MEM_MIB 2
#define MAX_MEM_MIB (1024 * 1024)

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mote --kernel PATH [options]\n"
		"\n"
		"Runs one KVM microVM and exits when the guest does.\n"
		"\n"
		"  --kernel PATH          vmlinux/PVH ELF or bzImage to boot (required)\n"
		"  --initrd PATH          initial ramdisk\n"
		"  --cmdline STR          kernel command line\n"
		"  --mem-mib N            guest RAM in MiB (default %d)\n"
		"  --vcpus N              number of vCPUs (default 1, max %d)\n"
		"  --boot-protocol P      auto (default: PVH if the ELF has the note), pvh, linux\n"
		"  --cpu-template T       host (default) or minimal (hides XSAVE/AVX, POPCNT,\n"
		"                         CX16, RDRAND/RDSEED, SMAP, FSGSBASE, RDPID, PCID/INVPCID)\n"
		"  --drive SPEC           attach a virtio-blk drive (repeatable, up to %d):\n"
		"                         path=FILE[,ro][,id=ID][,root][,bw=BYTES_PER_S][,iops=N]\n"
		"                         root adds root=/dev/vdX (in --drive order) to the cmdline\n"
		"  --boot-timer           enable the boot-timer device (write 123 at 0xc0000000)\n"
		"                         and log exec->first KVM_RUN and exec->boot-timer times\n"
		"  --log-level L          error, warn, info (default) or debug\n"
		"  -h, --help             this text\n"
		"  -V, --version          print the version\n"
		"\n"
		"SIGUSR1 prints every vCPU's registers to stderr; SIGTERM/SIGINT stop the VM.\n"
		"\n"
		"Exit status: the guest's debug-exit code (port 0xf4); 0 when the guest\n"
		"resets or powers off; 64 bad usage, 65 bad kernel/initrd, 66 missing file,\n"
		"69 KVM unavailable, 70 internal error, 80 guest crash (triple fault,\n"
		"emulation failure), 128+N killed by signal N.\n",
		DEFAULT_MEM_MIB, VM_MAX_VCPUS, BLK_MAX_DRIVES);
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
	OPT_CPU_TEMPLATE, OPT_BOOT_TIMER, OPT_LOG_LEVEL, OPT_DRIVE,
};

static const struct option long_opts[] = {
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "mem-mib", required_argument, NULL, OPT_MEM },
	{ "vcpus", required_argument, NULL, OPT_VCPUS },
	{ "boot-protocol", required_argument, NULL, OPT_BOOT_PROTO },
	{ "cpu-template", required_argument, NULL, OPT_CPU_TEMPLATE },
	{ "boot-timer", no_argument, NULL, OPT_BOOT_TIMER },
	{ "drive", required_argument, NULL, OPT_DRIVE },
	{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Returns -1 to continue, else the process exit code. */
static int parse_args(int argc, char **argv, struct vm_config *cfg)
{
	unsigned long v;
	int c;

	*cfg = (struct vm_config){
		.mem_bytes = (uint64_t)DEFAULT_MEM_MIB << 20,
		.nr_vcpus = 1,
		.boot_protocol = BOOT_PROTO_AUTO,
		.cpu_template = CPU_TEMPLATE_HOST,
	};
	opterr = 0;
	while ((c = getopt_long(argc, argv, "hV", long_opts, NULL)) != -1) {
		switch (c) {
		case OPT_KERNEL:
			cfg->kernel_path = optarg;
			break;
		case OPT_INITRD:
			cfg->initrd_path = optarg;
			break;
		case OPT_CMDLINE:
			cfg->cmdline = optarg;
			break;
		case OPT_MEM:
			if (parse_uint("--mem-mib", optarg, MIN_MEM_MIB, MAX_MEM_MIB, &v))
				return MOTE_EXIT_USAGE;
			cfg->mem_bytes = (uint64_t)v << 20;
			break;
		case OPT_VCPUS:
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
			if (cpu_template_parse(optarg, &cfg->cpu_template)) {
				log_error("--cpu-template: '%s' is not host or minimal", optarg);
				return MOTE_EXIT_USAGE;
			}
			break;
		case OPT_BOOT_TIMER:
			cfg->boot_timer = true;
			break;
		case OPT_DRIVE: {
			char err[256];
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
		case OPT_LOG_LEVEL:
			if (log_parse_level(optarg, &log_max_level)) {
				log_error("--log-level: '%s' is not error, warn, info or debug", optarg);
				return MOTE_EXIT_USAGE;
			}
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
	if (!cfg->kernel_path) {
		log_error("no kernel given: pass --kernel PATH (see mote --help)");
		return MOTE_EXIT_USAGE;
	}
	return -1;
}

static void on_exit_request(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	uint64_t v;

	(void)events;
	(void)opaque;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("exit eventfd read: %s", strerror(errno));
	loop_stop(loop);
}

static void on_signal(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct signalfd_siginfo si;
	struct vm *vm = opaque;
	char why[64];

	(void)events;
	if (read(fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (si.ssi_signo == SIGUSR1) {
		vm_request_dump(vm);
		return;
	}
	snprintf(why, sizeof(why), "received signal %s", strsignal((int)si.ssi_signo));
	vm_request_exit(vm, 128 + (int)si.ssi_signo, why);
	loop_stop(loop);
}

static int run_vm(const struct vm_config *cfg)
{
	static struct vm vm;
	struct event_loop *loop = NULL;
	sigset_t sigs;
	int sfd = -1;
	int ret;

	ret = vm_create(&vm, cfg);
	if (ret)
		goto out;
	loop = loop_create();
	if (!loop) {
		log_error("cannot create the event loop: %s", strerror(errno));
		ret = MOTE_EXIT_INTERNAL;
		goto out;
	}
	/* Devices first: they add themselves to the kernel command line. */
	ret = vm_add_virtio_devices(&vm, loop);
	if (!ret)
		ret = vm_load_kernel(&vm);
	if (ret)
		goto out;

	/* Termination signals become events on the VMM thread; vCPU threads
	 * inherit the blocked mask so they never see them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGQUIT);
	sigaddset(&sigs, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0 || loop_add(loop, sfd, EPOLLIN, on_signal, &vm) ||
	    loop_add(loop, vm.exit_eventfd, EPOLLIN, on_exit_request, &vm) ||
	    console_init(&vm, loop, STDIN_FILENO, STDOUT_FILENO)) {
		log_error("event loop set-up failed: %s", strerror(errno));
		ret = MOTE_EXIT_INTERNAL;
		goto out;
	}
	if (vm_add_legacy_devices(&vm)) {
		log_error("registering legacy devices failed");
		ret = MOTE_EXIT_INTERNAL;
		goto out;
	}
	ret = vm_create_vcpus(&vm);
	if (!ret)
		ret = vm_start_vcpus(&vm);
	if (ret) {
		vm_stop_vcpus(&vm);
		goto out;
	}
	ret = loop_run(loop);
	if (ret)
		log_error("event loop failed: %s", strerror(-ret));
	vm_stop_vcpus(&vm);
	ret = atomic_load(&vm.exit_code);
out:
	console_restore();
	if (sfd >= 0)
		close(sfd);
	vm_destroy(&vm);
	loop_destroy(loop);
	return ret;
}

int main(int argc, char **argv)
{
	struct vm_config cfg;
	int ret = parse_args(argc, argv, &cfg);

	if (ret >= 0)
		return ret;
	return run_vm(&cfg);
}
