/* Readers and parsers of the metrics' sources; see sources.h. */
#include "metrics/sources.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <linux/kvm.h>

static int parse_u64(const char **p, const char *end, uint64_t *out)
{
	const char *s = *p;
	uint64_t v = 0;

	while (s < end && *s == ' ')
		s++;
	if (s == end || *s < '0' || *s > '9')
		return -EINVAL;
	while (s < end && *s >= '0' && *s <= '9') {
		uint64_t d = (uint64_t)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
		s++;
	}
	*p = s;
	*out = v;
	return 0;
}

int schedstat_parse(const char *text, size_t len, uint64_t *run_ns, uint64_t *ready_ns)
{
	const char *p = text, *end = text + len;
	uint64_t run, ready;

	if (parse_u64(&p, end, &run) || parse_u64(&p, end, &ready))
		return -EINVAL;
	*run_ns = run;
	*ready_ns = ready;
	return 0;
}

int schedstat_read(int fd, uint64_t *run_ns, uint64_t *ready_ns)
{
	char buf[128];
	ssize_t n;

	if (fd < 0)
		return -EBADF;
	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return schedstat_parse(buf, (size_t)n, run_ns, ready_ns);
}

int schedstat_open_self_thread(void)
{
	return open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
}

static const char *const kstat_names[KSTAT_NR] = {
	[KSTAT_EXITS] = "exits",
	[KSTAT_IO_EXITS] = "io_exits",
	[KSTAT_MMIO_EXITS] = "mmio_exits",
	[KSTAT_HALT_EXITS] = "halt_exits",
	[KSTAT_IRQ_EXITS] = "irq_exits",
	[KSTAT_IRQ_WINDOW_EXITS] = "irq_window_exits",
	[KSTAT_SIGNAL_EXITS] = "signal_exits",
	[KSTAT_INSN_EMULATION] = "insn_emulation",
	[KSTAT_HALT_WAKEUP] = "halt_wakeup",
	[KSTAT_HALT_WAIT_NS] = "halt_wait_ns",
	[KSTAT_HALT_POLL_SUCCESS_NS] = "halt_poll_success_ns",
	[KSTAT_HALT_POLL_FAIL_NS] = "halt_poll_fail_ns",
	[KSTAT_PF_TAKEN] = "pf_taken",
};

const char *kvm_stat_name(enum kvm_stat_id id)
{
	return (unsigned)id < KSTAT_NR ? kstat_names[id] : NULL;
}

#define KVM_STATS_DESC_MAX 4096

int kvm_stats_parse_layout(const void *buf, size_t len, struct kvm_stats_layout *out)
{
	struct kvm_stats_header h;

	for (unsigned i = 0; i < KSTAT_NR; i++)
		out->offset[i] = -1;
	out->data_offset = 0;
	out->data_size = 0;
	if (len < sizeof(h))
		return -EINVAL;
	memcpy(&h, buf, sizeof(h));
	size_t dsz = sizeof(struct kvm_stats_desc) + (size_t)h.name_size;
	if (h.name_size == 0 || h.name_size > 1024 || h.num_desc > KVM_STATS_DESC_MAX ||
	    h.desc_offset > len || (size_t)h.num_desc * dsz > len - h.desc_offset)
		return -EINVAL;
	out->data_offset = h.data_offset;
	const uint8_t *d = (const uint8_t *)buf + h.desc_offset;
	for (uint32_t i = 0; i < h.num_desc; i++, d += dsz) {
		struct kvm_stats_desc e;
		char name[1025];

		memcpy(&e, d, sizeof(e));
		memcpy(name, d + sizeof(e), h.name_size);
		name[h.name_size] = '\0';
		/* One 64-bit value per statistic: histograms are skipped. */
		if (e.size != 1)
			continue;
		for (unsigned k = 0; k < KSTAT_NR; k++) {
			if (strcmp(name, kstat_names[k]))
				continue;
			if (e.offset > UINT32_MAX - 8)
				return -EINVAL;
			out->offset[k] = e.offset;
			if (e.offset + 8 > out->data_size)
				out->data_size = e.offset + 8;
		}
	}
	return 0;
}

int kvm_stats_load_layout(int fd, struct kvm_stats_layout *out)
{
	struct kvm_stats_header h;
	int ret;

	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		return -EIO;
	size_t len = (size_t)h.desc_offset +
		     (size_t)h.num_desc * (sizeof(struct kvm_stats_desc) + h.name_size);
	if (h.num_desc > KVM_STATS_DESC_MAX || h.name_size > 1024 || len > (1u << 22))
		return -EINVAL;
	void *buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	if (pread(fd, buf, len, 0) != (ssize_t)len)
		ret = -EIO;
	else
		ret = kvm_stats_parse_layout(buf, len, out);
	free(buf);
	return ret;
}

int kvm_stats_read(int fd, const struct kvm_stats_layout *l, void *scratch, size_t scratch_len,
		   uint64_t values[KSTAT_NR])
{
	memset(values, 0, sizeof(uint64_t) * KSTAT_NR);
	if (fd < 0 || !l->data_size)
		return -EBADF;
	if (l->data_size > scratch_len)
		return -ENOSPC;
	ssize_t n = pread(fd, scratch, l->data_size, l->data_offset);
	if (n < 0)
		return -errno;
	if ((size_t)n != l->data_size)
		return -EIO;
	for (unsigned k = 0; k < KSTAT_NR; k++)
		if (l->offset[k] >= 0)
			memcpy(&values[k], (uint8_t *)scratch + l->offset[k], sizeof(uint64_t));
	return 0;
}

int maps_mapping_is_shared(const char *maps, size_t len, uintptr_t addr)
{
	const char *p = maps, *end = maps + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl ? nl : end;
		char line[160];
		size_t n = (size_t)(line_end - p);

		if (n >= sizeof(line))
			n = sizeof(line) - 1;
		memcpy(line, p, n);
		line[n] = '\0';
		uintptr_t start, stop;
		char perms[8];
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s", &start, &stop, perms) == 3 &&
		    start == addr && strlen(perms) == 4)
			return perms[3] == 's' ? 1 : 0;
		p = line_end + 1;
	}
	return -ENOENT;
}
