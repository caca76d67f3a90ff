/* Snapshot create (files written atomically) and restore (files checked,
 * then applied to a freshly built VM); see snapshot.h. */
#include "snapshot/snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "snapshot/fail.h"
#include "snapshot/memfile.h"
#include "vmm/log.h"

#define SNAP_CONFIG_MAGIC 0x47464e43 /* "CNFG" */
#define SNAP_DRIVE_MAGIC  0x56495244 /* "DRIV" */
#define SNAP_VSOCK_MAGIC  0x4b535356 /* "VSSK" */
#define SNAP_NET_MAGIC    0x5054454e /* "NETP" */
#define SNAP_MEMORY_MAGIC 0x4d454d53 /* "SMEM" */
#define SNAP_DEV_MAGIC    0x56454444 /* "DDEV" */
/* 2: the irqchip mode in the config, the split irqchip's IOAPIC section. */
#define SNAP_SECTION_VERSION 2

struct snap_serial {
	uint32_t magic, version;
	uint8_t ier, lcr, mcr, scr, dll, dlm, fcr, thr_irq_pending;
	uint8_t rx[SERIAL_FIFO_SIZE];
	uint32_t rx_head, rx_count;
	uint8_t rx_was_full, pad[7];
};

struct snap_i8042 {
	uint32_t magic, version;
	uint8_t buf[I8042_BUF_SIZE];
	uint32_t head, len;
	uint8_t control, pending_cmd, boot_timer_fired, pad[5];
};

/* ---- create ---------------------------------------------------------------- */

int snapshot_prepare(void)
{
	return memfile_pagemap_fd() < 0 ? -errno : 0;
}

/* The last snapshot this process wrote or restored: a diff's parent. */
static uint64_t last_snapshot_id;

static uint64_t snap_new_id(void)
{
	struct timespec rt, mono;
	static uint64_t counter;

	clock_gettime(CLOCK_REALTIME, &rt);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	uint64_t x = (uint64_t)rt.tv_sec * 1000000000ULL + (uint64_t)rt.tv_nsec;
	x ^= ((uint64_t)getpid() << 40) ^ (uint64_t)mono.tv_nsec ^ (++counter << 20);
	/* splitmix64 finaliser: spread the bits. */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static int save_devices(struct vm *vm, struct snap_writer *w, char *err, size_t errlen)
{
	struct snap_serial s = { .magic = SNAP_DEV_MAGIC, .version = SNAP_SECTION_VERSION };

	pthread_mutex_lock(&vm->serial.lock);
	s.ier = vm->serial.ier;
	s.lcr = vm->serial.lcr;
	s.mcr = vm->serial.mcr;
	s.scr = vm->serial.scr;
	s.dll = vm->serial.dll;
	s.dlm = vm->serial.dlm;
	s.fcr = vm->serial.fcr;
	s.thr_irq_pending = vm->serial.thr_irq_pending;
	memcpy(s.rx, vm->serial.rx, sizeof(s.rx));
	s.rx_head = vm->serial.rx_head;
	s.rx_count = vm->serial.rx_count;
	s.rx_was_full = vm->serial.rx_was_full;
	pthread_mutex_unlock(&vm->serial.lock);
	snap_writer_add(w, SNAP_SEC_SERIAL, 0, &s, sizeof(s));

	struct snap_i8042 k = { .magic = SNAP_DEV_MAGIC, .version = SNAP_SECTION_VERSION };
	pthread_mutex_lock(&vm->i8042.lock);
	memcpy(k.buf, vm->i8042.buf, sizeof(k.buf));
	k.head = vm->i8042.head;
	k.len = vm->i8042.len;
	k.control = vm->i8042.control;
	k.pending_cmd = vm->i8042.pending_cmd;
	pthread_mutex_unlock(&vm->i8042.lock);
	k.boot_timer_fired = atomic_load(&vm->boot_timer_fired);
	snap_writer_add(w, SNAP_SEC_I8042, 0, &k, sizeof(k));

	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		uint8_t *buf = malloc(VIRTIO_MMIO_STATE_MAX);
		if (!buf)
			return -ENOMEM;
		int n = virtio_mmio_save(&vm->virtio[i], buf, VIRTIO_MMIO_STATE_MAX);
		if (n < 0) {
			free(buf);
			return fail(err, errlen, n, "virtio device %s: saving its state failed: %s",
				    vm->virtio[i].dev->name, strerror(-n));
		}
		snap_writer_add(w, SNAP_SEC_VIRTIO, i, buf, (size_t)n);
		free(buf);
	}
	return w->err;
}

static int save_config(struct vm *vm, struct snap_writer *w, uint64_t id, const char *mem_path,
		       bool diff)
{
	struct snap_config *c = snap_writer_section(w, SNAP_SEC_CONFIG, 0, sizeof(*c));

	if (!c)
		return w->err;
	c->magic = SNAP_CONFIG_MAGIC;
	c->version = SNAP_SECTION_VERSION;
	c->mem_bytes = vm->cfg.mem_bytes;
	c->nr_vcpus = vm->nr_vcpus;
	c->cpu_template = vm->cfg.cpu_template;
	c->boot_timer = vm->cfg.boot_timer;
	c->nr_drives = vm->cfg.nr_drives;
	c->nr_virtio = vm->nr_virtio;
	c->track_dirty_pages = vm->cfg.track_dirty_pages;
	c->irqchip = vm->cfg.irqchip;
	snprintf(c->kernel_path, sizeof(c->kernel_path), "%s",
		 vm->cfg.kernel_path ? vm->cfg.kernel_path : "");
	snprintf(c->cmdline, sizeof(c->cmdline), "%s", vm->cfg.cmdline ? vm->cfg.cmdline : "");

	for (unsigned i = 0; i < vm->cfg.nr_drives; i++) {
		const struct blk_config *b = &vm->cfg.drives[i];
		struct snap_drive *d = snap_writer_section(w, SNAP_SEC_DRIVE, i, sizeof(*d));
		if (!d)
			return w->err;
		d->magic = SNAP_DRIVE_MAGIC;
		d->version = SNAP_SECTION_VERSION;
		snprintf(d->path, sizeof(d->path), "%s", b->path);
		snprintf(d->id, sizeof(d->id), "%s", b->id);
		d->read_only = b->read_only;
		d->is_root = b->is_root;
		d->bw_size = b->bandwidth.size;
		d->bw_refill_ms = b->bandwidth.refill_time_ms;
		d->bw_burst = b->bandwidth.one_time_burst;
		d->ops_size = b->ops.size;
		d->ops_refill_ms = b->ops.refill_time_ms;
		d->ops_burst = b->ops.one_time_burst;
	}
	for (unsigned i = 0; i < vm->cfg.nr_nets; i++) {
		const struct net_config *nc = &vm->cfg.nets[i];
		struct snap_net *n = snap_writer_section(w, SNAP_SEC_NET, i, sizeof(*n));
		if (!n)
			return w->err;
		n->magic = SNAP_NET_MAGIC;
		n->version = SNAP_SECTION_VERSION;
		snprintf(n->id, sizeof(n->id), "%s", nc->id);
		snprintf(n->tap, sizeof(n->tap), "%s", nc->tap);
		memcpy(n->mac, nc->mac, 6);
		n->has_mac = nc->has_mac;
		n->mtu = nc->mtu;
		const struct token_bucket_config *tb[4] = { &nc->rx_bw, &nc->rx_ops, &nc->tx_bw,
							    &nc->tx_ops };
		for (unsigned k = 0; k < 4; k++) {
			n->rl[3 * k] = tb[k]->size;
			n->rl[3 * k + 1] = tb[k]->refill_time_ms;
			n->rl[3 * k + 2] = tb[k]->one_time_burst;
		}
	}
	if (vm->cfg.has_vsock) {
		struct snap_vsock *v = snap_writer_section(w, SNAP_SEC_VSOCK, 0, sizeof(*v));
		if (!v)
			return w->err;
		v->magic = SNAP_VSOCK_MAGIC;
		v->version = SNAP_SECTION_VERSION;
		v->guest_cid = vm->cfg.vsock.guest_cid;
		snprintf(v->uds_path, sizeof(v->uds_path), "%s", vm->cfg.vsock.uds_path);
	}
	struct snap_memory *m = snap_writer_section(w, SNAP_SEC_MEMORY, 0, sizeof(*m));
	if (!m)
		return w->err;
	m->magic = SNAP_MEMORY_MAGIC;
	m->version = SNAP_SECTION_VERSION;
	m->snapshot_id = id;
	m->mem_bytes = vm->mem.size;
	m->parent_id = diff ? last_snapshot_id : 0;
	m->diff = diff;
	snprintf(m->mem_path, sizeof(m->mem_path), "%s", mem_path);
	return 0;
}

static int write_file_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fsync_dir_of(const char *path)
{
	char copy[SNAP_PATH_MAX];

	snprintf(copy, sizeof(copy), "%s", path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int ret = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return ret;
}

/* Tests stop the monitor at a chosen step to check that a half-written
 * snapshot never loads (MOTE_SNAPSHOT_CRASH_AT=<step>). */
static void crash_point(const char *step)
{
	const char *at = getenv("MOTE_SNAPSHOT_CRASH_AT");

	if (at && !strcmp(at, step))
		raise(SIGKILL);
}

int snapshot_create(struct vm *vm, const struct snap_create_opts *o, char *err, size_t errlen)
{
	char mem_tmp[SNAP_PATH_MAX + 32], state_tmp[SNAP_PATH_MAX + 32];
	struct snap_writer w;
	struct memfile_stats ms;
	const uint8_t *state;
	size_t state_len;
	int mem_fd = -1, st_fd = -1, ret;
	uint64_t t0 = time_now_ns();
	uint64_t *dirty = NULL;

	if (strlen(o->state_path) >= SNAP_PATH_MAX || strlen(o->mem_path) >= SNAP_PATH_MAX)
		return fail(err, errlen, -ENAMETOOLONG, "snapshot path too long");
	/* Net devices have no state hooks in this build yet (vsock: its
	 * config is saved, its streams reset on restore). */
	if (vm->nr_virtio != vm->cfg.nr_drives + vm->cfg.nr_nets + (vm->cfg.has_vsock ? 1 : 0))
		return fail(err, errlen, -EOPNOTSUPP, "snapshots of microVMs with devices other than "
			    "drives, network interfaces and vsock are not supported by this build");
	if (o->diff && !vm->cfg.track_dirty_pages)
		return fail(err, errlen, -EINVAL, "a Diff snapshot needs dirty page tracking: "
			    "machine-config track_dirty_pages (or track_dirty_pages on "
			    "snapshot/load)");
	if (o->diff && !last_snapshot_id)
		return fail(err, errlen, -EINVAL, "a Diff snapshot needs an earlier snapshot of "
			    "this microVM to apply to; take a Full one first");
	uint64_t id = snap_new_id();
	snprintf(mem_tmp, sizeof(mem_tmp), "%s.tmp-%d", o->mem_path, (int)getpid());
	snprintf(state_tmp, sizeof(state_tmp), "%s.tmp-%d", o->state_path, (int)getpid());

	snap_writer_init(&w);
	ret = save_config(vm, &w, id, o->mem_path, o->diff);
	if (ret) {
		fail(err, errlen, ret, "building the state: %s", strerror(-ret));
		goto out;
	}
	/* Devices first: blk finishes its in-flight requests, which write
	 * guest memory, before memory and vCPUs are saved. */
	ret = save_devices(vm, &w, err, errlen);
	if (!ret)
		ret = snap_save_vm(vm, &w, err, errlen);
	if (!ret)
		ret = snap_save_vcpus(vm, &w, err, errlen);
	if (!ret)
		ret = snap_writer_finish(&w, &state, &state_len);
	if (ret) {
		if (!err[0])
			fail(err, errlen, ret, "building the state: %s", strerror(-ret));
		goto out;
	}

	mem_fd = open(mem_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (mem_fd < 0) {
		ret = fail(err, errlen, -errno, "cannot create memory file '%s': %s", mem_tmp,
			   strerror(errno));
		goto out;
	}
	if (vm->cfg.track_dirty_pages) {
		/* Every snapshot starts a new dirty round; a diff writes the
		 * pages of the round that ends now, zero or not. */
		dirty = malloc((vm->mem.size / 4096 + 63) / 64 * 8);
		ret = dirty ? snap_collect_dirty(vm, dirty) : -ENOMEM;
		if (ret) {
			fail(err, errlen, ret, "reading the dirty page log: %s", strerror(-ret));
			goto out;
		}
	}
	ret = memfile_write(mem_fd, &vm->mem, o->diff ? dirty : NULL, o->diff, &ms);
	if (!ret)
		ret = memfile_write_footer(mem_fd, vm->mem.size, id,
					   o->diff ? last_snapshot_id : 0, o->diff);
	if (!ret && fsync(mem_fd) < 0)
		ret = -errno;
	if (ret) {
		fail(err, errlen, ret, "writing memory file '%s': %s", mem_tmp, strerror(-ret));
		goto out;
	}
	crash_point("mem-written");
	st_fd = open(state_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (st_fd < 0) {
		ret = fail(err, errlen, -errno, "cannot create state file '%s': %s", state_tmp,
			   strerror(errno));
		goto out;
	}
	ret = write_file_all(st_fd, state, state_len);
	if (!ret && fsync(st_fd) < 0)
		ret = -errno;
	if (ret) {
		fail(err, errlen, ret, "writing state file '%s': %s", state_tmp, strerror(-ret));
		goto out;
	}
	crash_point("state-written");
	/* Memory first, state last: a state file under its final name always
	 * has its memory file (the footer's id says which) beside it. */
	if (rename(mem_tmp, o->mem_path) < 0) {
		ret = fail(err, errlen, -errno, "cannot rename '%s' to '%s': %s", mem_tmp,
			   o->mem_path, strerror(errno));
		goto out;
	}
	crash_point("mem-renamed");
	if (rename(state_tmp, o->state_path) < 0) {
		ret = fail(err, errlen, -errno, "cannot rename '%s' to '%s': %s", state_tmp,
			   o->state_path, strerror(errno));
		goto out;
	}
	fsync_dir_of(o->mem_path);
	fsync_dir_of(o->state_path);
	last_snapshot_id = id;
	log_info("snapshot: %s state '%s' (%zu bytes), memory '%s' (%llu of %llu pages written) "
		 "in %llu us", o->diff ? "diff" : "full", o->state_path, state_len, o->mem_path,
		 (unsigned long long)ms.written_pages, (unsigned long long)(vm->mem.size / 4096),
		 (unsigned long long)((time_now_ns() - t0) / 1000));
	ret = 0;
out:
	if (mem_fd >= 0)
		close(mem_fd);
	if (st_fd >= 0)
		close(st_fd);
	if (ret) {
		unlink(mem_tmp);
		unlink(state_tmp);
	}
	snap_writer_free(&w);
	free(dirty);
	return ret;
}

/* ---- restore ---------------------------------------------------------------- */

static int read_whole(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen)
{
	struct stat sb;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return fail(err, errlen, -errno, "snapshot state file '%s': cannot open: %s", path,
			    strerror(errno));
	if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': not a regular file",
			    path);
	}
	if ((uint64_t)sb.st_size > SNAP_MAX_FILE) {
		close(fd);
		return fail(err, errlen, -EFBIG, "snapshot state file '%s': %lld bytes, larger than "
			    "any state file (%u)", path, (long long)sb.st_size, SNAP_MAX_FILE);
	}
	uint8_t *buf = malloc(sb.st_size ? (size_t)sb.st_size : 1);
	size_t got = 0;
	while (buf && got < (size_t)sb.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	if (!buf)
		return -ENOMEM;
	*out = buf;
	*len = got;
	return 0;
}

/* A fixed-size section with its magic and version, copied out. */
static int get_section(const struct snap_image *img, uint32_t tag, uint32_t instance,
		       const char *what, void *out, size_t size, uint32_t magic, char *err,
		       size_t errlen)
{
	const struct snap_section *s = snap_state_find(&img->st, tag, instance);
	uint32_t head[2];

	if (!s)
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': no %s section",
			    img->state_path, what);
	if (s->len != size)
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': the %s section is %llu "
			    "bytes, expected %zu", img->state_path, what,
			    (unsigned long long)s->len, size);
	memcpy(head, s->data, sizeof(head));
	if (magic && (head[0] != magic || head[1] != SNAP_SECTION_VERSION))
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': the %s section has an "
			    "unknown magic or version %u", img->state_path, what, head[1]);
	memcpy(out, s->data, size);
	return 0;
}

static int check_memory_file(struct snap_image *img, char *err, size_t errlen)
{
	struct snap_mem_footer f;
	struct stat sb;

	img->mem_fd = open(img->mem_path, O_RDONLY | O_CLOEXEC);
	if (img->mem_fd < 0)
		return fail(err, errlen, -errno, "snapshot memory file '%s': cannot open: %s",
			    img->mem_path, strerror(errno));
	if (fstat(img->mem_fd, &sb) < 0 || !S_ISREG(sb.st_mode))
		return fail(err, errlen, -EINVAL, "snapshot memory file '%s': not a regular file",
			    img->mem_path);
	uint64_t want = img->cfg.mem_bytes + SNAP_MEM_FOOTER_SIZE;
	if ((uint64_t)sb.st_size < img->cfg.mem_bytes)
		return fail(err, errlen, -EINVAL, "snapshot memory file '%s': %lld bytes, shorter "
			    "than the snapshot's %llu MiB of guest memory", img->mem_path,
			    (long long)sb.st_size, (unsigned long long)(img->cfg.mem_bytes >> 20));
	if ((uint64_t)sb.st_size != want || memfile_read_footer(img->mem_fd, want, &f))
		return fail(err, errlen, -EINVAL, "snapshot memory file '%s': %lld bytes without a "
			    "valid mote footer (expected %llu bytes: guest memory and a 4 KiB "
			    "footer); truncated or not a mote memory file", img->mem_path,
			    (long long)sb.st_size, (unsigned long long)want);
	if (f.snapshot_id != img->mem.snapshot_id || f.mem_bytes != img->cfg.mem_bytes)
		return fail(err, errlen, -EINVAL, "snapshot memory file '%s' belongs to another "
			    "snapshot than '%s' (id %016llx, the state file wants %016llx)",
			    img->mem_path, img->state_path, (unsigned long long)f.snapshot_id,
			    (unsigned long long)img->mem.snapshot_id);
	if (f.diff)
		return fail(err, errlen, -EINVAL, "snapshot memory file '%s' is a diff snapshot: "
			    "merge it onto its base (mote snapshot-merge) first", img->mem_path);
	return 0;
}

int snapshot_open(struct snap_image *img, const char *state_path, const char *mem_path,
		  char *err, size_t errlen)
{
	char why[256];
	int ret;

	/* All but the drive slots (33 KiB, filled for the snapshot's drives
	 * only) and the two path buffers (written below): clearing those was
	 * ~10 page faults of every restore (each ~3 us here). */
	const size_t drives_end = offsetof(struct snap_image, drives) + sizeof(img->drives);
	_Static_assert(sizeof(struct snap_image) - (offsetof(struct snap_image, mem_path) +
						    SNAP_PATH_MAX) < _Alignof(struct snap_image) &&
			       offsetof(struct snap_image, state_path) + SNAP_PATH_MAX ==
				       offsetof(struct snap_image, mem_path),
		       "the path buffers end struct snap_image");
	memset(img, 0, offsetof(struct snap_image, drives));
	memset((char *)img + drives_end, 0, offsetof(struct snap_image, state_path) - drives_end);
	img->mem_fd = -1;
	if (!mem_path)
		mem_path = "";
	if (strlen(state_path) >= SNAP_PATH_MAX || strlen(mem_path) >= SNAP_PATH_MAX)
		return fail(err, errlen, -ENAMETOOLONG, "snapshot path too long");
	snprintf(img->state_path, sizeof(img->state_path), "%s", state_path);
	snprintf(img->mem_path, sizeof(img->mem_path), "%s", mem_path);
	ret = read_whole(state_path, &img->buf, &img->len, err, errlen);
	if (ret)
		return ret;
	ret = snap_state_parse(img->buf, img->len, &img->st, why, sizeof(why));
	if (ret)
		return fail(err, errlen, ret, "snapshot state file '%s': %s", state_path, why);
	ret = get_section(img, SNAP_SEC_CONFIG, 0, "machine config", &img->cfg, sizeof(img->cfg),
			  SNAP_CONFIG_MAGIC, err, errlen);
	if (!ret)
		ret = get_section(img, SNAP_SEC_MEMORY, 0, "memory", &img->mem, sizeof(img->mem),
				  SNAP_MEMORY_MAGIC, err, errlen);
	if (ret)
		return ret;
	struct snap_config *c = &img->cfg;
	c->kernel_path[sizeof(c->kernel_path) - 1] = '\0';
	c->cmdline[sizeof(c->cmdline) - 1] = '\0';
	if (c->nr_vcpus < 1 || c->nr_vcpus > VM_MAX_VCPUS || c->nr_drives > BLK_MAX_DRIVES ||
	    c->nr_virtio > VM_MAX_VIRTIO || c->mem_bytes < ((uint64_t)VM_MIN_MEM_MIB << 20) ||
	    c->mem_bytes > ((uint64_t)VM_MAX_MEM_MIB << 20) || (c->mem_bytes & 0xfff) ||
	    c->mem_bytes != img->mem.mem_bytes || c->cpu_template > CPU_TEMPLATE_MINIMAL ||
	    c->irqchip > IRQCHIP_KERNEL)
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': the machine config is "
			    "out of range (%u vCPUs, %llu bytes of memory, %u drives)", state_path,
			    c->nr_vcpus, (unsigned long long)c->mem_bytes, c->nr_drives);
	/* The lists must match the config: no vCPU or device may be missing
	 * or extra. */
	unsigned n = snap_state_count(&img->st, SNAP_SEC_VCPU);
	if (n != c->nr_vcpus)
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': %u vCPU sections for "
			    "a machine of %u vCPUs", state_path, n, c->nr_vcpus);
	for (unsigned i = 0; i < c->nr_vcpus; i++) {
		const struct snap_section *s = snap_state_find(&img->st, SNAP_SEC_VCPU, i);
		if (!s || s->len != snap_vcpu_state_size())
			return fail(err, errlen, -EINVAL, "snapshot state file '%s': vCPU %u's "
				    "section is missing or of the wrong size", state_path, i);
	}
	/* Every vCPU's CPUID table, used as saved when all are there and
	 * well-formed; else (older snapshots) the restore asks KVM. */
	img->nr_cpuid = 0;
	for (unsigned i = 0; i < c->nr_vcpus && i < VM_MAX_VCPUS; i++) {
		const struct snap_section *s = snap_state_find(&img->st, SNAP_SEC_CPUID, i);
		const struct kvm_cpuid2 *t = s ? (const struct kvm_cpuid2 *)s->data : NULL;
		if (!t || (uintptr_t)t % 8 || s->len < sizeof(*t) || t->nent > SNAP_CPUID_MAX ||
		    s->len != sizeof(*t) + t->nent * sizeof(t->entries[0]))
			break;
		img->cpuid[i] = t;
		img->nr_cpuid = i + 1;
	}
	n = snap_state_count(&img->st, SNAP_SEC_VIRTIO);
	img->has_vsock = snap_state_count(&img->st, SNAP_SEC_VSOCK) == 1;
	if (img->has_vsock) {
		ret = get_section(img, SNAP_SEC_VSOCK, 0, "vsock", &img->vsock, sizeof(img->vsock),
				  SNAP_VSOCK_MAGIC, err, errlen);
		if (ret)
			return ret;
		img->vsock.uds_path[sizeof(img->vsock.uds_path) - 1] = '\0';
	}
	img->nr_nets = snap_state_count(&img->st, SNAP_SEC_NET);
	if (img->nr_nets > NET_MAX_IFACES)
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': %u network interfaces, "
			    "at most %d", state_path, img->nr_nets, NET_MAX_IFACES);
	for (unsigned i = 0; i < img->nr_nets; i++) {
		struct snap_net *sn = &img->nets[i];
		ret = get_section(img, SNAP_SEC_NET, i, "network interface", sn, sizeof(*sn),
				  SNAP_NET_MAGIC, err, errlen);
		if (ret)
			return ret;
		sn->id[sizeof(sn->id) - 1] = '\0';
		sn->tap[sizeof(sn->tap) - 1] = '\0';
	}
	if (n != c->nr_virtio ||
	    c->nr_virtio != c->nr_drives + img->nr_nets + (img->has_vsock ? 1 : 0))
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': %u virtio device "
			    "sections, %u devices and %u drives in the config", state_path, n,
			    c->nr_virtio, c->nr_drives);
	if (snap_state_count(&img->st, SNAP_SEC_DRIVE) != c->nr_drives)
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': the drive list does "
			    "not match the config's %u drives", state_path, c->nr_drives);
	for (unsigned i = 0; i < c->nr_drives; i++) {
		struct snap_drive *d = &img->drives[i];
		ret = get_section(img, SNAP_SEC_DRIVE, i, "drive", d, sizeof(*d), SNAP_DRIVE_MAGIC,
				  err, errlen);
		if (ret)
			return ret;
		d->path[sizeof(d->path) - 1] = '\0';
		d->id[sizeof(d->id) - 1] = '\0';
		int fd = open(d->path, (d->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
		if (fd < 0)
			return fail(err, errlen, -errno, "snapshot state file '%s': drive '%s' backing "
				    "file '%s': cannot open: %s", state_path, d->id, d->path,
				    strerror(errno));
		close(fd);
	}
	if (!mem_path[0])
		return 0; /* Uffd: the page-fault handler has the memory */
	return check_memory_file(img, err, errlen);
}

void snapshot_close(struct snap_image *img)
{
	snap_state_free(&img->st);
	free(img->buf);
	img->buf = NULL;
	if (img->mem_fd >= 0)
		close(img->mem_fd);
	img->mem_fd = -1;
}

void snapshot_vm_config(struct snap_image *img, struct vm_config *cfg)
{
	const struct snap_config *c = &img->cfg;

	cfg->kernel_path = c->kernel_path;
	cfg->initrd_path = NULL;
	cfg->cmdline = c->cmdline;
	cfg->from_snapshot = true;
	cfg->mem_from_file = img->mem_fd >= 0;
	cfg->mem_bytes = c->mem_bytes;
	cfg->nr_vcpus = c->nr_vcpus;
	cfg->cpu_template = c->cpu_template;
	cfg->saved_cpuid = c->nr_vcpus && img->nr_cpuid == c->nr_vcpus ? img->cpuid : NULL;
	cfg->irqchip = (enum irqchip_mode)c->irqchip;
	cfg->boot_timer = c->boot_timer;
	cfg->nr_drives = c->nr_drives;
	for (unsigned i = 0; i < c->nr_drives; i++) {
		const struct snap_drive *d = &img->drives[i];
		struct blk_config *b = &cfg->drives[i];
		memset(b, 0, sizeof(*b));
		snprintf(b->path, sizeof(b->path), "%s", d->path);
		snprintf(b->id, sizeof(b->id), "%s", d->id);
		b->read_only = d->read_only;
		b->is_root = d->is_root;
		b->bandwidth = (struct token_bucket_config){ d->bw_size, d->bw_refill_ms, d->bw_burst };
		b->ops = (struct token_bucket_config){ d->ops_size, d->ops_refill_ms, d->ops_burst };
	}
	/* The uds path as saved: a relative one resolves in the restoring
	 * process's working directory, so clones in their own directories (or
	 * jails) each get their own socket. */
	cfg->nr_nets = img->nr_nets;
	for (unsigned i = 0; i < img->nr_nets; i++) {
		const struct snap_net *sn = &img->nets[i];
		struct net_config *nc = &cfg->nets[i];
		memset(nc, 0, sizeof(*nc));
		snprintf(nc->id, sizeof(nc->id), "%s", sn->id);
		snprintf(nc->tap, sizeof(nc->tap), "%s", sn->tap);
		memcpy(nc->mac, sn->mac, 6);
		nc->has_mac = sn->has_mac;
		nc->mtu = sn->mtu;
		struct token_bucket_config *tb[4] = { &nc->rx_bw, &nc->rx_ops, &nc->tx_bw,
						      &nc->tx_ops };
		for (unsigned k = 0; k < 4; k++)
			*tb[k] = (struct token_bucket_config){ sn->rl[3 * k], sn->rl[3 * k + 1],
							       sn->rl[3 * k + 2] };
	}
	cfg->has_vsock = img->has_vsock;
	if (img->has_vsock) {
		cfg->vsock.guest_cid = img->vsock.guest_cid;
		snprintf(cfg->vsock.uds_path, sizeof(cfg->vsock.uds_path), "%s", img->vsock.uds_path);
	}
	cfg->mem_file_fd = img->mem_fd;
	img->mem_fd = -1;
}

static int restore_devices(struct vm *vm, const struct snap_image *img, char *err,
			   size_t errlen)
{
	struct snap_serial s;
	struct snap_i8042 k;
	int ret;

	ret = get_section(img, SNAP_SEC_SERIAL, 0, "serial", &s, sizeof(s), SNAP_DEV_MAGIC, err,
			  errlen);
	if (!ret)
		ret = get_section(img, SNAP_SEC_I8042, 0, "i8042", &k, sizeof(k), SNAP_DEV_MAGIC, err,
				  errlen);
	if (ret)
		return ret;
	if (s.rx_head >= SERIAL_FIFO_SIZE || s.rx_count > SERIAL_FIFO_SIZE ||
	    k.head >= I8042_BUF_SIZE || k.len > I8042_BUF_SIZE)
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': serial or i8042 buffer "
			    "indices out of range", img->state_path);
	pthread_mutex_lock(&vm->serial.lock);
	vm->serial.ier = s.ier;
	vm->serial.lcr = s.lcr;
	vm->serial.mcr = s.mcr;
	vm->serial.scr = s.scr;
	vm->serial.dll = s.dll;
	vm->serial.dlm = s.dlm;
	vm->serial.fcr = s.fcr;
	vm->serial.thr_irq_pending = s.thr_irq_pending;
	memcpy(vm->serial.rx, s.rx, sizeof(s.rx));
	vm->serial.rx_head = s.rx_head;
	vm->serial.rx_count = s.rx_count;
	vm->serial.rx_was_full = s.rx_was_full;
	pthread_mutex_unlock(&vm->serial.lock);

	pthread_mutex_lock(&vm->i8042.lock);
	memcpy(vm->i8042.buf, k.buf, sizeof(k.buf));
	vm->i8042.head = k.head;
	vm->i8042.len = k.len;
	vm->i8042.control = k.control;
	vm->i8042.pending_cmd = k.pending_cmd;
	pthread_mutex_unlock(&vm->i8042.lock);
	atomic_store(&vm->boot_timer_fired, k.boot_timer_fired != 0);

	for (unsigned i = 0; i < vm->nr_virtio; i++) {
		const struct snap_section *sec = snap_state_find(&img->st, SNAP_SEC_VIRTIO, i);
		const char *why = "no state";
		if (!sec || virtio_mmio_restore(&vm->virtio[i], sec->data, (size_t)sec->len, &why))
			return fail(err, errlen, -EINVAL, "snapshot state file '%s': virtio device %u "
				    "(%s): %s", img->state_path, i, vm->virtio[i].dev->name, why);
	}
	/* The guest's streams ended with the saved process: tell it (the
	 * transport reset event), so it drops them and listens again. */
	if (vm->vsock) {
		int r = virtio_vsock_transport_reset(vm->vsock);
		if (r && r != -ENODEV)
			log_warn("snapshot: vsock transport reset: %s", strerror(-r));
	}
	return 0;
}

int snapshot_apply(struct vm *vm, const struct snap_image *img, char *err, size_t errlen)
{
	char why[256] = "";
	uint64_t t0 = time_now_ns();
	int ret;

	if (vm->nr_vcpus != img->cfg.nr_vcpus || vm->nr_virtio != img->cfg.nr_virtio)
		return fail(err, errlen, -EINVAL, "snapshot state file '%s': the VM built from it has "
			    "%u vCPUs and %u devices, the snapshot %u and %u", img->state_path,
			    vm->nr_vcpus, vm->nr_virtio, img->cfg.nr_vcpus, img->cfg.nr_virtio);
	ret = snap_restore_vm(vm, &img->st, img->clock_realtime, why, sizeof(why));
	if (!ret)
		ret = snap_restore_vcpus(vm, &img->st, why, sizeof(why));
	if (ret)
		return fail(err, errlen, ret, "snapshot state file '%s': %s", img->state_path, why);
	/* Devices last: blk may take requests queued before the snapshot,
	 * and complete them into memory that is now in place. */
	ret = restore_devices(vm, img, err, errlen);
	if (!ret) {
		last_snapshot_id = img->mem.snapshot_id;
		log_debug("snapshot: vCPU, interrupt controller, clock and device state set in %llu us",
			  (unsigned long long)((time_now_ns() - t0) / 1000));
	}
	return ret;
}
