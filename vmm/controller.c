/* The VM lifecycle on the VMM thread; see controller.h. */
#include "vmm/controller.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>
#include <linux/kvm.h>

#include "vmm/caps.h"
#include "vmm/console.h"
#include "vmm/log.h"
#include "vmm/seccomp.h"
#include "snapshot/snapshot.h"
#include "virtio/tap.h"

#ifndef MOTE_VERSION
#define MOTE_VERSION "0.1.0"
#endif

#define PAUSE_TIMEOUT_MS 5000

enum ctrl_state {
	CTRL_NOT_STARTED,
	CTRL_RUNNING,
	CTRL_PAUSED,
	CTRL_FAILED,     /* an InstanceStart failed after devices existed */
};

/* A request in flight from the API thread; lives on that thread's stack. */
struct api_call {
	const struct api_request *req;
	struct api_response *resp;
	bool done;
	struct api_call *next;
};

struct controller {
	struct event_loop *loop;
	enum ctrl_state state;
	char id[API_ID_MAX + 1];

	/* The configuration being built; cfg's strings point at these. */
	struct vm_config cfg;
	char kernel_path[API_PATH_MAX];
	char initrd_path[API_PATH_MAX];
	char cmdline[API_CMDLINE_MAX];
	enum api_cache_type cache_type[BLK_MAX_DRIVES];
	char vsock_id[API_ID_MAX + 1];

	struct vm vm;
	bool vm_created;
	int exit_code;               /* before or without a running VM */
	uint64_t start_ns;           /* InstanceStart, 0 when booted from the command line */
	uint64_t api_requests;

	bool logger_set;
	struct api_logger logger;
	int metrics_fd;
	char metrics_path[API_PATH_MAX];
	struct vm_metrics *demand;   /* metrics/: sampled on a timer in the loop */
	uint64_t last_flush_ns;      /* periodic metrics flush */
	bool no_api;                 /* --no-api: nothing can ask for demand metrics */
	bool standby;                /* --standby: Paused until SIGUSR2 (or PATCH /vm) */

	/* API thread -> VMM thread */
	pthread_mutex_t q_lock;
	pthread_cond_t q_done;
	struct api_call *q_head, *q_tail;
	bool q_closed;
	int q_efd;
};

static struct controller ctl = {
	.q_lock = PTHREAD_MUTEX_INITIALIZER,
	.q_done = PTHREAD_COND_INITIALIZER,
	.q_efd = -1,
	.metrics_fd = -1,
};

static const char *state_name(enum ctrl_state s)
{
	switch (s) {
	case CTRL_RUNNING: return "Running";
	case CTRL_PAUSED: return "Paused";
	default: return "Not started";
	}
}

static void respond_json(struct api_response *resp, json_t *o)
{
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (!body) {
		api_response_error(resp, "internal error: cannot encode the answer");
		return;
	}
	api_response_body(resp, 200, body);
}

static void respond_ok(struct api_response *resp)
{
	api_response_body(resp, 204, NULL);
}

static bool started(void)
{
	return ctl.state == CTRL_RUNNING || ctl.state == CTRL_PAUSED;
}

/* Pre-boot resources: refuse once the VM exists. */
static bool refuse_after_start(struct api_response *resp, const char *what)
{
	if (ctl.state == CTRL_NOT_STARTED)
		return false;
	if (ctl.state == CTRL_FAILED)
		api_response_error(resp, "%s: an earlier InstanceStart failed part-way; start a new "
				   "mote to try again", what);
	else
		api_response_error(resp, "%s: the microVM is already started; this can only be set "
				   "before InstanceStart", what);
	return true;
}

static bool refuse_before_start(struct api_response *resp, const char *what)
{
	if (started())
		return false;
	api_response_error(resp, "%s: the microVM is not running; this needs InstanceStart first",
			   what);
	return true;
}

/* Files are checked when configured (as Firecracker does), so a wrong path
 * is a 400 at once and never a half-built VM. */
static bool refuse_unreadable(struct api_response *resp, const char *what, const char *field,
			      const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return false;
	}
	api_response_error(resp, "%s: cannot open %s '%s': %s", what, field, path, strerror(errno));
	return true;
}

/* ---- JSON views of the configuration ----------------------------------------- */

static json_t *json_str_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static json_t *json_boot_source(void)
{
	if (!ctl.kernel_path[0])
		return json_null();
	return json_pack("{s:s, s:o, s:o}", "kernel_image_path", ctl.kernel_path, "initrd_path",
			 json_str_or_null(ctl.initrd_path), "boot_args",
			 json_str_or_null(ctl.cmdline));
}

static json_t *json_machine_config(void)
{
	json_t *o = json_pack("{s:i, s:I, s:b, s:b, s:s}", "vcpu_count", (int)ctl.cfg.nr_vcpus,
			      "mem_size_mib", (json_int_t)(ctl.cfg.mem_bytes >> 20), "smt", 0,
			      "track_dirty_pages", (int)ctl.cfg.track_dirty_pages, "huge_pages",
			      "None");

	if (o && ctl.cfg.cpu_template == CPU_TEMPLATE_MINIMAL)
		json_object_set_new(o, "cpu_template", json_string("Minimal"));
	return o;
}

static json_t *json_token_bucket(const struct token_bucket_config *tb)
{
	if (!tb->size)
		return json_null();
	return json_pack("{s:I, s:I, s:I}", "size", (json_int_t)tb->size, "one_time_burst",
			 (json_int_t)tb->one_time_burst, "refill_time",
			 (json_int_t)tb->refill_time_ms);
}

static json_t *json_drive(unsigned i)
{
	const struct blk_config *d = &ctl.cfg.drives[i];
	json_t *rl = json_null();

	if (d->bandwidth.size || d->ops.size)
		rl = json_pack("{s:o, s:o}", "bandwidth", json_token_bucket(&d->bandwidth), "ops",
			       json_token_bucket(&d->ops));
	/* io_engine: mote's backend is io_uring whatever was asked. */
	return json_pack("{s:s, s:n, s:b, s:s, s:b, s:s, s:o, s:s, s:n}", "drive_id", d->id,
			 "partuuid", "is_root_device", d->is_root, "cache_type",
			 ctl.cache_type[i] == API_CACHE_WRITEBACK ? "Writeback" : "Unsafe",
			 "is_read_only", d->read_only, "path_on_host", d->path, "rate_limiter", rl,
			 "io_engine", "Async", "socket");
}

static json_t *json_rate_limiter(const struct token_bucket_config *bw,
				  const struct token_bucket_config *ops)
{
	if (!bw->size && !ops->size)
		return json_null();
	return json_pack("{s:o, s:o}", "bandwidth", json_token_bucket(bw), "ops",
			 json_token_bucket(ops));
}

static json_t *json_net(unsigned i)
{
	const struct net_config *n = &ctl.cfg.nets[i];
	char mac[18];

	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", n->mac[0], n->mac[1],
		 n->mac[2], n->mac[3], n->mac[4], n->mac[5]);
	json_t *o = json_pack("{s:s, s:s, s:o, s:o}", "iface_id", n->id, "host_dev_name", n->tap,
			      "rx_rate_limiter", json_rate_limiter(&n->rx_bw, &n->rx_ops),
			      "tx_rate_limiter", json_rate_limiter(&n->tx_bw, &n->tx_ops));
	/* Derived MACs exist from InstanceStart on. */
	if (o && n->has_mac)
		json_object_set_new(o, "guest_mac", json_string(mac));
	if (o && n->mtu)
		json_object_set_new(o, "mtu", json_integer(n->mtu));
	return o;
}

static json_t *json_logger(void)
{
	static const char *const names[] = { "Error", "Warning", "Info", "Debug" };

	if (!ctl.logger_set)
		return json_null();
	json_t *o = json_pack("{s:s, s:b, s:b}", "level",
			      ctl.logger.off ? "Off" : names[ctl.logger.level], "show_level",
			      ctl.logger.show_level, "show_log_origin", ctl.logger.show_log_origin);
	if (o && ctl.logger.log_path[0])
		json_object_set_new(o, "log_path", json_string(ctl.logger.log_path));
	return o;
}

static json_t *json_vsock(void)
{
	if (!ctl.cfg.has_vsock)
		return json_null();
	json_t *o = json_pack("{s:I, s:s}", "guest_cid", (json_int_t)ctl.cfg.vsock.guest_cid,
			      "uds_path", ctl.cfg.vsock.uds_path);
	if (o && ctl.vsock_id[0])
		json_object_set_new(o, "vsock_id", json_string(ctl.vsock_id));
	return o;
}

static json_t *json_vm_config(void)
{
	json_t *drives = json_array();

	json_t *nets = json_array();

	for (unsigned i = 0; i < ctl.cfg.nr_drives; i++)
		json_array_append_new(drives, json_drive(i));
	for (unsigned i = 0; i < ctl.cfg.nr_nets; i++)
		json_array_append_new(nets, json_net(i));
	return json_pack("{s:n, s:o, s:o, s:n, s:o, s:o, s:o, s:n, s:o, s:o, s:n}", "balloon",
			 "drives", drives, "boot-source", json_boot_source(), "cpu-config",
			 "logger", json_logger(), "machine-config", json_machine_config(),
			 "metrics",
			 ctl.metrics_path[0] ? json_pack("{s:s}", "metrics_path", ctl.metrics_path)
					     : json_null(),
			 "mmds-config", "network-interfaces", nets, "vsock", json_vsock(), "entropy");
}

/* The vsock device's counters, null without one. */
static json_t *json_vsock_metrics(void)
{
	if (!ctl.vm_created || !ctl.vm.vsock)
		return json_null();
	const struct vsock_stats *st = virtio_vsock_stats(ctl.vm.vsock);
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
			 "conns_opened", (json_int_t)st->conns_opened, "conns_closed",
			 (json_int_t)st->conns_closed, "host_conns_refused",
			 (json_int_t)st->host_conns_refused, "guest_conns_refused",
			 (json_int_t)st->guest_conns_refused, "rx_bytes", (json_int_t)st->rx_bytes,
			 "tx_bytes", (json_int_t)st->tx_bytes, "rx_packets",
			 (json_int_t)st->rx_packets, "tx_packets", (json_int_t)st->tx_packets,
			 "bad_packets", (json_int_t)st->bad_packets, "credit_violations",
			 (json_int_t)st->credit_violations, "rst_dropped",
			 (json_int_t)st->rst_dropped, "open",
			 (json_int_t)virtio_vsock_nr_conns(ctl.vm.vsock));
}

static json_t *json_metrics(void)
{
	struct timeval tv;
	json_t *vcpus = json_array(), *blocks = json_array(), *nets = json_array();

	gettimeofday(&tv, NULL);
	if (ctl.vm_created) {
		for (unsigned i = 0; i < ctl.vm.nr_vcpus; i++)
			json_array_append_new(vcpus, json_pack("{s:i, s:I}", "id", (int)i, "exits",
							       (json_int_t)atomic_load_explicit(
								       &ctl.vm.vcpus[i].nr_exits,
								       memory_order_relaxed)));
		for (unsigned d = 0; d < ctl.cfg.nr_drives; d++) {
			if (!ctl.vm.blk[d])
				continue;
			const struct blk_stats *st = virtio_blk_stats(ctl.vm.blk[d]);
			json_array_append_new(
				blocks,
				json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
					  "drive_id", ctl.cfg.drives[d].id, "read_ops",
					  (json_int_t)st->read_ops, "write_ops",
					  (json_int_t)st->write_ops, "flush_ops",
					  (json_int_t)st->flush_ops, "discard_ops",
					  (json_int_t)st->discard_ops, "write_zeroes_ops",
					  (json_int_t)st->write_zeroes_ops, "read_bytes",
					  (json_int_t)st->read_bytes, "write_bytes",
					  (json_int_t)st->write_bytes, "io_errors",
					  (json_int_t)st->io_errors, "bad_requests",
					  (json_int_t)st->bad_requests, "rate_limited",
					  (json_int_t)st->rate_limited));
		}
	}
	for (unsigned i = 0; ctl.vm_created && i < ctl.cfg.nr_nets; i++) {
		if (!ctl.vm.net[i])
			continue;
		const struct net_stats *st = virtio_net_stats(ctl.vm.net[i]);
		json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "iface_id",
				      ctl.cfg.nets[i].id, "rx_frames", (json_int_t)st->rx_frames,
				      "rx_bytes", (json_int_t)st->rx_bytes, "tx_frames",
				      (json_int_t)st->tx_frames, "tx_bytes", (json_int_t)st->tx_bytes,
				      "rx_dropped", (json_int_t)st->rx_dropped, "rx_no_buffers",
				      (json_int_t)st->rx_no_buffers, "tx_dropped",
				      (json_int_t)st->tx_dropped, "tx_errors", (json_int_t)st->tx_errors);
		if (o) {
			json_object_set_new(o, "rx_rate_limited", json_integer((json_int_t)st->rx_rate_limited));
			json_object_set_new(o, "tx_rate_limited", json_integer((json_int_t)st->tx_rate_limited));
		}
		json_array_append_new(nets, o);
	}
	return json_pack("{s:I, s:I, s:s, s:I, s:o, s:o, s:o, s:o}", "utc_timestamp_ms",
			 (json_int_t)tv.tv_sec * 1000 + tv.tv_usec / 1000, "uptime_us",
			 (json_int_t)time_since_exec_us(), "state", state_name(ctl.state),
			 "api_requests", (json_int_t)ctl.api_requests, "vcpus", vcpus, "block",
			 blocks, "net", nets, "vsock", json_vsock_metrics());
}

/* ---- requests ---------------------------------------------------------------- */

static void put_boot_source(const struct api_boot_source *b, struct api_response *resp)
{
	if (refuse_after_start(resp, "boot-source") ||
	    refuse_unreadable(resp, "boot-source", "kernel_image_path", b->kernel_path, O_RDONLY) ||
	    (b->initrd_path[0] &&
	     refuse_unreadable(resp, "boot-source", "initrd_path", b->initrd_path, O_RDONLY)))
		return;
	memcpy(ctl.kernel_path, b->kernel_path, sizeof(ctl.kernel_path));
	memcpy(ctl.initrd_path, b->initrd_path, sizeof(ctl.initrd_path));
	memcpy(ctl.cmdline, b->boot_args, sizeof(ctl.cmdline));
	respond_ok(resp);
}

static void put_machine_config(const struct api_machine_config *m, struct api_response *resp)
{
	if (refuse_after_start(resp, "machine-config"))
		return;
	if (m->has_vcpu_count)
		ctl.cfg.nr_vcpus = m->vcpu_count;
	if (m->has_mem_size)
		ctl.cfg.mem_bytes = m->mem_size_mib << 20;
	if (m->has_cpu_template)
		ctl.cfg.cpu_template = m->cpu_template;
	if (m->has_track_dirty_pages)
		ctl.cfg.track_dirty_pages = m->track_dirty_pages;
	respond_ok(resp);
}

static int find_drive(const char *id)
{
	for (unsigned i = 0; i < ctl.cfg.nr_drives; i++)
		if (!strcmp(ctl.cfg.drives[i].id, id))
			return (int)i;
	return -1;
}

static void put_drive(const struct api_drive *d, struct api_response *resp)
{
	int at = find_drive(d->blk.id);

	if (refuse_after_start(resp, "drives"))
		return;
	for (unsigned i = 0; i < ctl.cfg.nr_drives; i++) {
		if ((int)i != at && d->blk.is_root && ctl.cfg.drives[i].is_root) {
			api_response_error(resp, "drives: drive '%s' is already the root device; only "
					   "one drive can have is_root_device=true",
					   ctl.cfg.drives[i].id);
			return;
		}
	}
	if (at < 0 && ctl.cfg.nr_drives == BLK_MAX_DRIVES) {
		api_response_error(resp, "drives: at most %d drives per microVM", BLK_MAX_DRIVES);
		return;
	}
	if (refuse_unreadable(resp, "drives", "path_on_host", d->blk.path,
			      d->blk.read_only ? O_RDONLY : O_RDWR))
		return;
	if (at < 0)
		at = (int)ctl.cfg.nr_drives++;
	ctl.cfg.drives[at] = d->blk;
	ctl.cache_type[at] = d->cache_type;
	respond_ok(resp);
}

static void patch_drive(const struct api_drive *d, struct api_response *resp)
{
	if (refuse_before_start(resp, "drives"))
		return;
	if (find_drive(d->blk.id) < 0) {
		api_response_error(resp, "drives: there is no drive '%s'", d->blk.id);
		return;
	}
	if (d->has_path) {
		api_response_error(resp, "drives: changing path_on_host of a running microVM is not "
				   "supported yet");
		return;
	}
	if (d->has_rate_limiter) {
		api_response_error(resp, "drives: updating rate_limiter of a running microVM is not "
				   "supported yet");
		return;
	}
	respond_ok(resp); /* nothing asked to change */
}

/* PUT /vsock: one device; a second PUT replaces it (before boot). The
 * socket itself is bound at InstanceStart, so only what can be checked
 * now without side effects is: the path must not be some other file. */
static void put_vsock(const struct api_vsock *v, struct api_response *resp)
{
	struct stat st;

	if (refuse_after_start(resp, "vsock"))
		return;
	if (lstat(v->cfg.uds_path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
		api_response_error(resp, "vsock: uds_path '%s' exists and is not a socket",
				   v->cfg.uds_path);
		return;
	}
	ctl.cfg.vsock = v->cfg;
	ctl.cfg.has_vsock = true;
	memcpy(ctl.vsock_id, v->id, sizeof(ctl.vsock_id));
	respond_ok(resp);
}

static int find_net(const char *id)
{
	for (unsigned i = 0; i < ctl.cfg.nr_nets; i++)
		if (!strcmp(ctl.cfg.nets[i].id, id))
			return (int)i;
	return -1;
}

static void put_net(const struct api_net *n, struct api_response *resp)
{
	int at = find_net(n->net.id);
	unsigned offloads;
	char err[256];

	if (refuse_after_start(resp, "network-interfaces"))
		return;
	for (unsigned i = 0; i < ctl.cfg.nr_nets; i++) {
		const struct net_config *o = &ctl.cfg.nets[i];
		if ((int)i == at)
			continue;
		if (!strcmp(o->tap, n->net.tap) ||
		    (n->net.has_mac && o->has_mac && !memcmp(o->mac, n->net.mac, 6))) {
			api_response_error(resp, "network-interfaces: interface '%s' already uses %s",
					   o->id, strcmp(o->tap, n->net.tap) ? "this guest_mac"
									   : "this host_dev_name");
			return;
		}
	}
	if (at < 0 && ctl.cfg.nr_nets == NET_MAX_IFACES) {
		api_response_error(resp, "network-interfaces: at most %d interfaces per microVM",
				   NET_MAX_IFACES);
		return;
	}
	/* Attach once now, as Firecracker does, so a missing TAP is a 400. */
	int fd = tap_open(n->net.tap, &offloads, err, sizeof(err));
	if (fd < 0) {
		api_response_error(resp, "network-interfaces: %s", err);
		return;
	}
	close(fd);
	if (at < 0)
		at = (int)ctl.cfg.nr_nets++;
	ctl.cfg.nets[at] = n->net;
	respond_ok(resp);
}

static void patch_net(const struct api_net *n, struct api_response *resp)
{
	int at;

	if (refuse_before_start(resp, "network-interfaces"))
		return;
	at = find_net(n->net.id);
	if (at < 0 || !ctl.vm.net[at]) {
		api_response_error(resp, "network-interfaces: there is no network interface '%s'",
				   n->net.id);
		return;
	}
	if (virtio_net_set_rate_limits(ctl.vm.net[at],
				       n->has_rx_rate_limiter ? &n->net.rx_bw : NULL,
				       n->has_rx_rate_limiter ? &n->net.rx_ops : NULL,
				       n->has_tx_rate_limiter ? &n->net.tx_bw : NULL,
				       n->has_tx_rate_limiter ? &n->net.tx_ops : NULL)) {
		api_response_error(resp, "network-interfaces: a rate limiter needs a refill time");
		return;
	}
	struct net_config *c = &ctl.cfg.nets[at];
	if (n->has_rx_rate_limiter) {
		c->rx_bw = n->net.rx_bw;
		c->rx_ops = n->net.rx_ops;
	}
	if (n->has_tx_rate_limiter) {
		c->tx_bw = n->net.tx_bw;
		c->tx_ops = n->net.tx_ops;
	}
	respond_ok(resp);
}

static int open_output(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0600);
}

static void put_logger(const struct api_logger *l, struct api_response *resp)
{
	int fd = -1;

	/* Pre-boot only, as in Firecracker: after InstanceStart the VMM thread
	 * runs under its seccomp filter, which opens no files. */
	if (refuse_after_start(resp, "logger"))
		return;
	if (l->log_path[0]) {
		fd = open_output(l->log_path);
		if (fd < 0) {
			api_response_error(resp, "logger: cannot open log_path '%s': %s", l->log_path,
					   strerror(errno));
			return;
		}
	}
	struct api_logger now = *l;
	/* No log_path: the log goes on where it went. A previous file stays
	 * open, since another thread may be writing a line to it right now. */
	if (!l->log_path[0] && ctl.logger_set)
		memcpy(now.log_path, ctl.logger.log_path, sizeof(now.log_path));
	now.level = l->has_level ? l->level : LOG_INFO;
	ctl.logger = now;
	ctl.logger_set = true;
	log_max_level = now.level;
	log_configure(fd, l->show_level, l->show_log_origin, l->off);
	respond_ok(resp);
}

static void put_metrics(const char *path, struct api_response *resp)
{
	if (refuse_after_start(resp, "metrics"))
		return;
	if (ctl.metrics_fd >= 0) {
		api_response_error(resp, "metrics: the metrics system is already configured (to "
				   "'%s')", ctl.metrics_path);
		return;
	}
	ctl.metrics_fd = open_output(path);
	if (ctl.metrics_fd < 0) {
		api_response_error(resp, "metrics: cannot open metrics_path '%s': %s", path,
				   strerror(errno));
		return;
	}
	snprintf(ctl.metrics_path, sizeof(ctl.metrics_path), "%s", path);
	respond_ok(resp);
}

/* One JSON line, with the demand group, appended to the metrics file.
 * 0, -ENOMEM (cannot encode) or the write's -errno (-EIO: short). */
static int write_metrics_line(void)
{
	json_t *m = json_metrics();
	if (m && ctl.demand)
		json_object_set_new(m, "demand", vm_metrics_json(ctl.demand));
	char *line = m ? json_dumps(m, JSON_COMPACT) : NULL;
	json_decref(m);
	if (!line)
		return -ENOMEM;
	size_t len = strlen(line);
	line[len] = '\n'; /* json_dumps' terminator becomes the line end */
	ssize_t n = write(ctl.metrics_fd, line, len + 1);
	int err = errno;
	free(line);
	ctl.last_flush_ns = time_now_ns();
	if (n != (ssize_t)(len + 1))
		return n < 0 ? -err : -EIO;
	return 0;
}

static void flush_metrics(struct api_response *resp)
{
	if (ctl.metrics_fd < 0) {
		api_response_error(resp, "actions: FlushMetrics: the metrics system is not configured; "
				   "PUT /metrics first");
		return;
	}
	int ret = write_metrics_line();
	if (ret == -ENOMEM) {
		api_response_error(resp, "actions: FlushMetrics: cannot encode the metrics");
		return;
	}
	if (ret) {
		api_response_error(resp, "actions: FlushMetrics: writing '%s' failed: %s",
				   ctl.metrics_path, ret == -EIO ? "short write" : strerror(-ret));
		return;
	}
	respond_ok(resp);
}

/* Every demand sample: flush the metrics file every flush_ms, as
 * Firecracker does every 60 s. */
static void on_demand_tick(void *opaque)
{
	(void)opaque;
	unsigned every_ms = ctl.cfg.metrics.flush_ms ? ctl.cfg.metrics.flush_ms
						     : METRICS_DEFAULT_FLUSH_MS;

	if (ctl.metrics_fd < 0 || time_now_ns() - ctl.last_flush_ns < every_ms * 1000000ULL)
		return;
	static bool warned; /* once: the next ticks would say the same */
	int ret = write_metrics_line();
	if (ret && !warned)
		log_warn("periodic metrics flush to '%s' failed: %s", ctl.metrics_path,
			 strerror(-ret));
	warned |= ret != 0;
}

static void get_demand(struct api_response *resp)
{
	if (refuse_before_start(resp, "demand"))
		return;
	if (!ctl.demand) {
		api_response_error(resp, "demand: the demand metrics could not be set up for this "
				   "microVM (see the log)");
		return;
	}
	respond_json(resp, vm_metrics_json(ctl.demand));
}

static void instance_start(struct api_response *resp)
{
	char err[256];

	if (refuse_after_start(resp, "actions: InstanceStart"))
		return;
	if (!ctl.kernel_path[0]) {
		api_response_error(resp, "actions: InstanceStart: no kernel configured; PUT "
				   "/boot-source first");
		return;
	}
	/* The files may have moved since they were configured. */
	if (refuse_unreadable(resp, "actions: InstanceStart", "kernel_image_path", ctl.kernel_path,
			      O_RDONLY) ||
	    (ctl.initrd_path[0] && refuse_unreadable(resp, "actions: InstanceStart", "initrd_path",
						     ctl.initrd_path, O_RDONLY)))
		return;
	for (unsigned i = 0; i < ctl.cfg.nr_drives; i++) {
		const struct blk_config *d = &ctl.cfg.drives[i];
		if (refuse_unreadable(resp, "actions: InstanceStart", "path_on_host", d->path,
				      d->read_only ? O_RDONLY : O_RDWR))
			return;
	}
	uint64_t t0 = time_now_ns();
	ctl.start_ns = t0;
	log_capture_errors(err, sizeof(err));
	int ret = controller_boot();
	log_capture_errors(NULL, 0);
	if (ret) {
		api_response_error(resp, "actions: InstanceStart failed: %s%s",
				   err[0] ? err : "see the log",
				   ctl.state == CTRL_FAILED ? " (start a new mote to try again)" : "");
		return;
	}
	log_info("InstanceStart: VM started in %llu us",
		 (unsigned long long)((time_now_ns() - t0) / 1000));
	respond_ok(resp);
}

/* Ends a pause: PATCH /vm Resumed, and SIGUSR2 for a --standby restore.
 * A standby's sampler was held off (no wake-ups while it waited): it
 * starts now, after the vCPUs, off their critical path. */
static void resume_vm(const char *why)
{
	bool standby = ctl.standby;

	if (standby)
		atomic_store(&ctl.vm.standby_resume_ns, time_now_ns());
	vm_resume(&ctl.vm);
	ctl.state = CTRL_RUNNING;
	ctl.standby = false;
	if (standby && ctl.demand) {
		int e = vm_metrics_set_sampling(ctl.demand, true);
		if (e)
			log_warn("demand metrics: cannot start sampling: %s", strerror(-e));
	}
	log_info("VM resumed%s%s", standby ? " from standby on " : "", standby ? why : "");
}

void controller_standby_resume(void)
{
	if (!ctl.standby) {
		log_info("SIGUSR2 ignored: the microVM is not in standby (it is %s)",
			 state_name(ctl.state));
		return;
	}
	resume_vm("SIGUSR2");
}

static void pause_vm(bool pause, struct api_response *resp)
{
	if (refuse_before_start(resp, "vm"))
		return;
	if (pause && ctl.state == CTRL_RUNNING) {
		int ret = vm_pause(&ctl.vm, PAUSE_TIMEOUT_MS);
		if (ret) {
			api_response_error(resp, "vm: pausing failed: %s",
					   ret == -ETIMEDOUT ? "the vCPUs did not stop in time"
							     : "the microVM is shutting down");
			return;
		}
		ctl.state = CTRL_PAUSED;
		log_info("VM paused");
	} else if (!pause && ctl.state == CTRL_PAUSED) {
		resume_vm("PATCH /vm");
	}
	respond_ok(resp);
}

static void ctrl_alt_del(struct api_response *resp)
{
	if (refuse_before_start(resp, "actions: SendCtrlAltDel"))
		return;
	if (vm_send_ctrl_alt_del(&ctl.vm)) {
		api_response_error(resp, "actions: SendCtrlAltDel: the i8042 buffer is full (the "
				   "guest has not read the keys sent before)");
		return;
	}
	respond_ok(resp);
}

/* ---- snapshots ------------------------------------------------------------------ */

/* Set while controller_boot builds the VM from a snapshot instead of a
 * kernel (controller_restore). */
static struct {
	struct snap_image *img;
	bool resume;
	bool standby;
	bool clock_realtime;
	const char *prefetch_path;
	const char *uffd_path;
} restoring;

/* --record-working-set: where controller_shutdown writes the pages the
 * restored VM touched. */
static char ws_record_path[API_PATH_MAX];

static void snapshot_create_req(const struct api_snapshot_create *s, struct api_response *resp)
{
	struct snap_create_opts o = { s->snapshot_path, s->mem_file_path, s->diff };
	char err[512] = "";

	if (ctl.state != CTRL_PAUSED) {
		api_response_error(resp, "snapshot/create: the microVM must be paused first (PATCH "
				   "/vm {\"state\": \"Paused\"}); it is %s",
				   state_name(ctl.state));
		return;
	}
	if (snapshot_create(&ctl.vm, &o, err, sizeof(err))) {
		api_response_error(resp, "snapshot/create: %s", err);
		return;
	}
	respond_ok(resp);
}

static void snapshot_load_req(const struct api_snapshot_load *s, struct api_response *resp)
{
	char err[512];

	if (refuse_after_start(resp, "snapshot/load"))
		return;
	if (ctl.kernel_path[0] || ctl.cfg.nr_drives) {
		api_response_error(resp, "snapshot/load: loading a snapshot is not allowed after "
				   "configuring boot-specific resources (boot-source, drives)");
		return;
	}
	struct controller_restore_opts o = {
		.state_path = s->snapshot_path, .mem_path = s->mem_path, .resume = s->resume_vm,
		.track_dirty_pages = s->track_dirty_pages, .clock_realtime = s->clock_realtime,
		.uffd_path = s->uffd ? s->mem_path : NULL,
		.vsock_uds_path = s->vsock_uds_path[0] ? s->vsock_uds_path : NULL,
		.vsock_cid = s->vsock_cid,
		.nr_net_overrides = s->nr_net_overrides, .net_overrides = s->net_overrides,
	};
	log_capture_errors(err, sizeof(err));
	int ret = controller_restore(&o);
	log_capture_errors(NULL, 0);
	if (ret) {
		api_response_error(resp, "snapshot/load: %s%s", err[0] ? err : "failed; see the log",
				   ctl.state == CTRL_FAILED ? " (start a new mote to try again)" : "");
		return;
	}
	respond_ok(resp);
}

void controller_handle(const struct api_request *req, struct api_response *resp)
{
	ctl.api_requests++;
	switch (req->op) {
	case API_GET_INSTANCE_INFO:
		respond_json(resp, json_pack("{s:s, s:s, s:s, s:s}", "id", ctl.id, "state",
					     state_name(ctl.state), "vmm_version", MOTE_VERSION,
					     "app_name", "mote"));
		break;
	case API_PUT_BOOT_SOURCE:
		put_boot_source(&req->boot, resp);
		break;
	case API_GET_MACHINE_CONFIG:
		respond_json(resp, json_machine_config());
		break;
	case API_PUT_MACHINE_CONFIG:
	case API_PATCH_MACHINE_CONFIG:
		put_machine_config(&req->machine, resp);
		break;
	case API_PUT_DRIVE:
		put_drive(&req->drive, resp);
		break;
	case API_PATCH_DRIVE:
		patch_drive(&req->drive, resp);
		break;
	case API_PUT_NET:
		put_net(&req->net, resp);
		break;
	case API_PATCH_NET:
		patch_net(&req->net, resp);
		break;
	case API_PUT_VSOCK:
		put_vsock(&req->vsock, resp);
		break;
	case API_INSTANCE_START:
		instance_start(resp);
		break;
	case API_SEND_CTRL_ALT_DEL:
		ctrl_alt_del(resp);
		break;
	case API_FLUSH_METRICS:
		flush_metrics(resp);
		break;
	case API_PAUSE:
	case API_RESUME:
		pause_vm(req->op == API_PAUSE, resp);
		break;
	case API_GET_VM_CONFIG:
		respond_json(resp, json_vm_config());
		break;
	case API_PUT_LOGGER:
		put_logger(&req->logger, resp);
		break;
	case API_GET_DEMAND:
		get_demand(resp);
		break;
	case API_PUT_METRICS:
		put_metrics(req->metrics_path, resp);
		break;
	case API_SNAPSHOT_CREATE:
		snapshot_create_req(&req->snap_create, resp);
		break;
	case API_SNAPSHOT_LOAD:
		snapshot_load_req(&req->snap_load, resp);
		break;
	default:
		api_response_error(resp, "internal error: request %d has no handler", (int)req->op);
		break;
	}
}

/* ---- boot -------------------------------------------------------------------- */

static void on_exit_request(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	uint64_t v;

	(void)events;
	(void)opaque;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("exit eventfd read: %s", strerror(errno));
	loop_stop(loop);
}

/* Demand metrics are read by GET /demand and the metrics file only. A
 * clone a launcher starts (--no-api, no metrics file; mote-fnd reads the
 * vCPU threads' schedstat itself) would set them up for nobody: ~0.3 ms
 * of its start (stats layout, working-set set-up, a timer) and a wake-up
 * a second for as long as it lives, thousands a second on a full host. */
static bool demand_has_reader(void)
{
	return !ctl.no_api || ctl.metrics_fd >= 0;
}

/* Every resource is open: give up the capabilities (mote run as root
 * without the jailer) and compile the seccomp filters. Before the vCPU
 * threads start, so they inherit no capabilities; each then loads its own
 * filter, and the VMM thread loads its filter once they started and the
 * demand metrics are set up (which open files its filter does not allow). */
static int controller_lock_down(void)
{
	/* Snapshots of this VM read /proc/self/pagemap; the VMM filter opens
	 * no file for reading. Not fatal: such snapshots then fail. */
	if (snapshot_prepare())
		log_debug("cannot open /proc/self/pagemap: %s", strerror(errno));
	int ret = caps_drop_all();

	if (ret) {
		log_error("cannot drop capabilities: %s", strerror(-ret));
		return MOTE_EXIT_INTERNAL;
	}
	ret = seccomp_prepare(ctl.cfg.seccomp);
	if (ret) {
		log_error("cannot build the seccomp filters: %s", strerror(-ret));
		return MOTE_EXIT_INTERNAL;
	}
	return 0;
}

int controller_boot(void)
{
	struct vm *vm = &ctl.vm;
	int ret;

	ctl.cfg.kernel_path = ctl.kernel_path;
	ctl.cfg.initrd_path = ctl.initrd_path[0] ? ctl.initrd_path : NULL;
	ctl.cfg.cmdline = ctl.cmdline;
	for (unsigned i = 0; i < ctl.cfg.nr_nets; i++) {
		struct net_config *n = &ctl.cfg.nets[i];
		if (!n->has_mac) {
			net_derive_mac(ctl.id, n->id, n->mac);
			n->has_mac = true;
		}
	}
	ctl.cfg.kvm_stats = demand_has_reader();
	ret = vm_create(vm, &ctl.cfg);
	if (ret) {
		/* Nothing reached the event loop yet: InstanceStart can be retried. */
		vm_destroy(vm);
		return ret;
	}
	ctl.vm_created = true;
	vm->instance_start_ns = ctl.start_ns;
	/* Devices first: they add themselves to the kernel command line. */
	ret = vm_add_virtio_devices(vm, ctl.loop);
	if (!ret && !restoring.img)
		ret = vm_load_kernel(vm);
	if (ret)
		goto fail;
	if (loop_add(ctl.loop, vm->exit_eventfd, EPOLLIN, on_exit_request, NULL) ||
	    console_init(vm, ctl.loop, STDIN_FILENO, STDOUT_FILENO)) {
		log_error("event loop set-up failed: %s", strerror(errno));
		ret = MOTE_EXIT_INTERNAL;
		goto fail;
	}
	if (vm_add_legacy_devices(vm)) {
		log_error("registering legacy devices failed");
		ret = MOTE_EXIT_INTERNAL;
		goto fail;
	}
	log_debug("devices and boot structures ready");
	ret = vm_create_vcpus(vm);
	log_debug("vCPUs created");
	if (!ret && restoring.img) {
		char err[512];
		restoring.img->clock_realtime = restoring.clock_realtime;
		/* Uffd: the handler must be serving before anything (the devices'
		 * restore included) touches guest RAM. */
		if (restoring.uffd_path &&
		    snapshot_uffd_attach(&vm->mem, restoring.uffd_path, err, sizeof(err))) {
			log_error("%s", err);
			ret = MOTE_EXIT_NOINPUT;
		}
		if (!ret && snapshot_apply(vm, restoring.img, err, sizeof(err))) {
			log_error("%s", err);
			ret = MOTE_EXIT_BAD_IMAGE;
		}
		if (!ret && restoring.prefetch_path) {
			uint64_t n, t0 = time_now_ns();
			int e = snapshot_ws_prefetch(&vm->mem, restoring.prefetch_path, &n);
			if (e)
				log_warn("snapshot: working-set file '%s' not used: %s",
					 restoring.prefetch_path,
					 e == -EINVAL ? "not a record for this snapshot" : strerror(-e));
			else
				log_info("snapshot: prefetched %llu pages of the working set in %llu us",
					 (unsigned long long)n,
					 (unsigned long long)((time_now_ns() - t0) / 1000));
		}
		/* Not resumed: the vCPU threads start and park before KVM_RUN. */
		if (!ret && !restoring.resume)
			atomic_store(&vm->pause_requested, true);
	}
	if (!ret)
		ret = controller_lock_down();
	log_debug("capabilities dropped, seccomp filters built");
	if (!ret)
		ret = vm_start_vcpus(vm);
	if (ret)
		goto fail;
	/* After the vCPUs started (~0.15 ms off the first KVM_RUN): nothing
	 * here is needed to run the guest, and the first sample is a baseline
	 * (a vCPU thread that has not opened its schedstat yet counts as not
	 * run). Before the VMM filter, which allows no open. Not fatal: the
	 * VM runs without demand metrics (GET /demand says so). */
	ctl.last_flush_ns = time_now_ns();
	if (!demand_has_reader()) {
		/* As the sampler does: what a launcher reads from schedstat
		 * stays the guest's own work. */
		int e = vm_halt_poll_off(vm);
		if (e)
			log_debug("KVM halt polling stays on: %s", strerror(-e));
	} else if (vm_metrics_create(&ctl.demand, vm, ctl.loop, &ctl.cfg.metrics, on_demand_tick,
				   NULL))
		ctl.demand = NULL;
	/* A standby clone wakes for nothing until it is resumed. */
	if (restoring.img && restoring.standby && ctl.demand) {
		int e = vm_metrics_set_sampling(ctl.demand, false);
		if (e)
			log_warn("demand metrics: cannot hold sampling off in standby: %s",
				 strerror(-e));
	}
	log_debug("metrics ready");
	ctl.state = restoring.img && !restoring.resume ? CTRL_PAUSED : CTRL_RUNNING;
	ctl.standby = restoring.img && restoring.standby;
	/* Guest exits reach this thread only through the loop, so the filter
	 * is in place before any of them is handled here. With the API this
	 * runs inside the loop (InstanceStart), as Firecracker filters its VMM
	 * thread once the VM is built; the API thread started earlier and
	 * does not inherit it. */
	ret = seccomp_install(SECCOMP_VMM);
	if (ret) {
		log_error("cannot install the VMM thread's seccomp filter: %s", strerror(-ret));
		vm_request_exit(vm, MOTE_EXIT_INTERNAL, "seccomp set-up failed");
	}
	return 0;
fail:
	vm_stop_vcpus(vm);
	ctl.state = CTRL_FAILED;
	return ret;
}

int controller_restore(const struct controller_restore_opts *o)
{
	/* snapshot_open sets what is read (not all: see there). */
	struct snap_image *img = malloc(sizeof(*img));
	uint64_t t0 = time_now_ns();
	char err[512] = "";
	int ret;

	if (!img)
		return MOTE_EXIT_INTERNAL;
	ret = snapshot_open(img, o->state_path, o->uffd_path ? NULL : o->mem_path, err,
			    sizeof(err));
	if (ret) {
		log_error("%s", err);
		snapshot_close(img);
		free(img);
		return ret == -ENOENT || ret == -EACCES ? MOTE_EXIT_NOINPUT : MOTE_EXIT_BAD_IMAGE;
	}
	log_debug("snapshot: state and memory files checked in %llu us",
		  (unsigned long long)((time_now_ns() - t0) / 1000));
	snapshot_vm_config(img, &ctl.cfg);
	ctl.cfg.track_dirty_pages = o->track_dirty_pages;
	/* Clones need identity: their own vsock socket and CID. The guest
	 * learns of the change from the transport reset after the restore. */
	if ((o->vsock_uds_path || o->vsock_cid) && !ctl.cfg.has_vsock) {
		log_error("vsock_override: the snapshot '%s' has no vsock device", o->state_path);
		snapshot_close(img);
		free(img);
		return MOTE_EXIT_USAGE;
	}
	if (o->vsock_uds_path)
		snprintf(ctl.cfg.vsock.uds_path, sizeof(ctl.cfg.vsock.uds_path), "%s",
			 o->vsock_uds_path);
	if (o->vsock_cid)
		ctl.cfg.vsock.guest_cid = o->vsock_cid;
	for (unsigned i = 0; i < o->nr_net_overrides; i++) {
		const struct api_net_override *no = &o->net_overrides[i];
		int at = find_net(no->iface_id);
		if (at < 0) {
			log_error("network_overrides: the snapshot '%s' has no interface '%s'",
				  o->state_path, no->iface_id);
			snapshot_close(img);
			free(img);
			return MOTE_EXIT_USAGE;
		}
		snprintf(ctl.cfg.nets[at].tap, sizeof(ctl.cfg.nets[at].tap), "%s",
			 no->host_dev_name);
	}
	snprintf(ctl.kernel_path, sizeof(ctl.kernel_path), "%s", img->cfg.kernel_path);
	snprintf(ctl.cmdline, sizeof(ctl.cmdline), "%s", img->cfg.cmdline);
	ctl.initrd_path[0] = '\0';
	restoring.img = img;
	restoring.resume = o->resume;
	restoring.standby = o->standby && !o->resume;
	restoring.clock_realtime = o->clock_realtime;
	restoring.prefetch_path = o->prefetch_path;
	restoring.uffd_path = o->uffd_path;
	snprintf(ws_record_path, sizeof(ws_record_path), "%s",
		 o->record_ws_path ? o->record_ws_path : "");
	ret = controller_boot();
	restoring.img = NULL;
	/* Views into img, which goes now. */
	ctl.cfg.saved_cpuid = NULL;
	ctl.vm.cfg.saved_cpuid = NULL;
	snapshot_close(img);
	free(img);
	if (!ret)
		log_info("snapshot: restored from '%s' in %llu us (%llu us since exec)%s",
			 o->state_path, (unsigned long long)((time_now_ns() - t0) / 1000),
			 (unsigned long long)time_since_exec_us(),
			 o->resume ? "" : o->standby ? ", in standby until SIGUSR2" : ", paused");
	return ret;
}

/* ---- the API thread's side ------------------------------------------------------ */

void controller_api_handler(void *opaque, const struct api_request *req,
			    struct api_response *resp)
{
	struct api_call call = { .req = req, .resp = resp };
	uint64_t one = 1;

	(void)opaque;
	pthread_mutex_lock(&ctl.q_lock);
	if (ctl.q_closed) {
		pthread_mutex_unlock(&ctl.q_lock);
		api_response_error(resp, "the microVM is shutting down");
		return;
	}
	if (ctl.q_tail)
		ctl.q_tail->next = &call;
	else
		ctl.q_head = &call;
	ctl.q_tail = &call;
	/* Under the lock: controller_shutdown closes the eventfd under it. */
	if (write(ctl.q_efd, &one, sizeof(one)) < 0)
		log_warn("API request eventfd: %s", strerror(errno));
	while (!call.done)
		pthread_cond_wait(&ctl.q_done, &ctl.q_lock);
	pthread_mutex_unlock(&ctl.q_lock);
}

static struct api_call *queue_pop(void)
{
	pthread_mutex_lock(&ctl.q_lock);
	struct api_call *c = ctl.q_head;
	if (c) {
		ctl.q_head = c->next;
		if (!ctl.q_head)
			ctl.q_tail = NULL;
	}
	pthread_mutex_unlock(&ctl.q_lock);
	return c;
}

static void call_done(struct api_call *c)
{
	pthread_mutex_lock(&ctl.q_lock);
	c->done = true; /* the API thread's stack frame: not touched after this */
	pthread_cond_broadcast(&ctl.q_done);
	pthread_mutex_unlock(&ctl.q_lock);
}

static void on_api_request(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct api_call *c;
	uint64_t v;

	(void)loop;
	(void)events;
	(void)opaque;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_warn("API request eventfd read: %s", strerror(errno));
	while ((c = queue_pop())) {
		controller_handle(c->req, c->resp);
		call_done(c);
	}
}

/* ---- set-up and tear-down ----------------------------------------------------- */

int controller_init(struct event_loop *loop, const struct vm_config *cfg, const char *instance_id,
		    bool no_api)
{
	/* jansson seeds its hash tables from /dev/urandom on first use: do
	 * it now, while no thread is under a seccomp filter yet. */
	json_object_seed(0);
	ctl.loop = loop;
	ctl.no_api = no_api;
	vm_config_copy(&ctl.cfg, cfg);
	snprintf(ctl.id, sizeof(ctl.id), "%s", instance_id);
	snprintf(ctl.kernel_path, sizeof(ctl.kernel_path), "%s",
		 cfg->kernel_path ? cfg->kernel_path : "");
	snprintf(ctl.initrd_path, sizeof(ctl.initrd_path), "%s",
		 cfg->initrd_path ? cfg->initrd_path : "");
	snprintf(ctl.cmdline, sizeof(ctl.cmdline), "%s", cfg->cmdline ? cfg->cmdline : "");
	/* --drive's writes are flushed on the guest's FLUSH: Writeback. */
	for (unsigned i = 0; i < BLK_MAX_DRIVES; i++)
		ctl.cache_type[i] = API_CACHE_WRITEBACK;
	ctl.q_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctl.q_efd < 0)
		return -errno;
	return loop_add(loop, ctl.q_efd, EPOLLIN, on_api_request, NULL);
}

bool controller_has_boot_source(void)
{
	return ctl.kernel_path[0] != '\0';
}

void controller_request_exit(int code, const char *why)
{
	if (started()) {
		vm_request_exit(&ctl.vm, code, why);
	} else {
		ctl.exit_code = code;
		log_info("stopping: %s (exit code %d)", why, code);
	}
	loop_stop(ctl.loop);
}

void controller_request_dump(void)
{
	if (started())
		vm_request_dump(&ctl.vm);
}

void controller_shutdown(void)
{
	struct api_call *c;

	pthread_mutex_lock(&ctl.q_lock);
	ctl.q_closed = true;
	pthread_mutex_unlock(&ctl.q_lock);
	while ((c = queue_pop())) {
		api_response_error(c->resp, "the microVM is shutting down");
		call_done(c);
	}
	if (ctl.vm_created) {
		/* Parked vCPUs are woken by vm_stop_vcpus. */
		vm_stop_vcpus(&ctl.vm);
		if (ws_record_path[0]) {
			uint64_t n;
			int e = snapshot_ws_record(&ctl.vm.mem, ws_record_path, &n);
			if (e)
				log_warn("cannot write the working set to '%s': %s", ws_record_path,
					 strerror(-e));
			else
				log_info("snapshot: working set of %llu pages written to '%s'",
					 (unsigned long long)n, ws_record_path);
		}
	}
	console_restore();
	vm_metrics_destroy(ctl.demand, ctl.loop);
	ctl.demand = NULL;
	if (ctl.vm_created)
		vm_destroy(&ctl.vm);
	ctl.vm_created = false;
	pthread_mutex_lock(&ctl.q_lock);
	if (ctl.q_efd >= 0) {
		loop_remove(ctl.loop, ctl.q_efd);
		close(ctl.q_efd);
		ctl.q_efd = -1;
	}
	pthread_mutex_unlock(&ctl.q_lock);
}

int controller_exit_code(void)
{
	return started() ? atomic_load(&ctl.vm.exit_code) : ctl.exit_code;
}
