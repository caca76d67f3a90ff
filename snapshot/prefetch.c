/* Working-set prefetch for restored VMs (REAP, ASPLOS'21): a restored VM
 * records which guest pages it touched (present in its own page tables,
 * /proc/self/pagemap) into a small file beside the snapshot; later
 * restores of the same snapshot populate exactly those pages in one batch
 * of MADV_POPULATE_READ calls before the vCPUs start, instead of taking
 * one host page fault per page while the guest runs.
 *
 * File: "MOTEWS01", u64 mem_bytes, u64 nr_ranges, then nr_ranges pairs
 * of u64 (first page, page count), pages counted from the start of guest
 * RAM (the memory file's offsets / 4096). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/memfile.h"
#include "snapshot/snapshot.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#define WS_MAGIC "MOTEWS01"
#define WS_MAX_RANGES (1u << 20)
#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_SWAPPED (1ULL << 62)
#define CHUNK 4096

struct ws_header {
	char magic[8];
	uint64_t mem_bytes;
	uint64_t nr_ranges;
};

static int ws_write_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;

	while (len) {
		ssize_t n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

int snapshot_ws_record(const struct guest_mem *mem, const char *path, uint64_t *nr_pages)
{
	uint64_t entries[CHUNK], npages = mem->size / 4096, first = (uintptr_t)mem->base / 4096;
	uint64_t (*ranges)[2] = NULL;
	size_t nr = 0, cap = 0;
	int pm, out = -1, ret = 0;

	*nr_pages = 0;
	pm = memfile_pagemap_fd();
	if (pm < 0)
		return -errno;
	for (uint64_t p = 0; p < npages && !ret; p += CHUNK) {
		uint64_t n = npages - p < CHUNK ? npages - p : CHUNK;
		if (pread(pm, entries, n * 8, (off_t)((first + p) * 8)) != (ssize_t)(n * 8)) {
			ret = -EIO;
			break;
		}
		for (uint64_t i = 0; i < n; i++) {
			if (!(entries[i] & (PAGEMAP_PRESENT | PAGEMAP_SWAPPED)))
				continue;
			(*nr_pages)++;
			if (nr && ranges[nr - 1][0] + ranges[nr - 1][1] == p + i) {
				ranges[nr - 1][1]++;
				continue;
			}
			if (nr == cap) {
				size_t ncap = cap ? cap * 2 : 256;
				void *nr_ = ncap <= WS_MAX_RANGES ? realloc(ranges, ncap * sizeof(*ranges))
								   : NULL;
				if (!nr_) {
					ret = -ENOMEM;
					break;
				}
				ranges = nr_;
				cap = ncap;
			}
			ranges[nr][0] = p + i;
			ranges[nr][1] = 1;
			nr++;
		}
	}
	if (ret)
		goto out;
	struct ws_header h = { .mem_bytes = mem->size, .nr_ranges = nr };
	memcpy(h.magic, WS_MAGIC, 8);
	out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		ret = -errno;
		goto out;
	}
	ret = ws_write_all(out, &h, sizeof(h));
	if (!ret && nr)
		ret = ws_write_all(out, ranges, nr * sizeof(*ranges));
out:
	if (out >= 0)
		close(out);
	free(ranges);
	return ret;
}

int snapshot_ws_prefetch(const struct guest_mem *mem, const char *path, uint64_t *nr_pages)
{
	struct ws_header h;
	uint64_t r[2];
	int fd, ret = 0;

	*nr_pages = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (read(fd, &h, sizeof(h)) != (ssize_t)sizeof(h) || memcmp(h.magic, WS_MAGIC, 8) ||
	    h.mem_bytes != mem->size || h.nr_ranges > WS_MAX_RANGES) {
		close(fd);
		return -EINVAL;
	}
	/* The file is input: every range must lie inside guest RAM. */
	for (uint64_t i = 0; i < h.nr_ranges; i++) {
		if (read(fd, r, sizeof(r)) != (ssize_t)sizeof(r)) {
			ret = -EINVAL;
			break;
		}
		uint64_t npages = mem->size / 4096;
		if (r[0] >= npages || r[1] == 0 || r[1] > npages - r[0]) {
			ret = -EINVAL;
			break;
		}
		/* Read-only population: page-cache pages map shared; the guest's
		 * writes still copy on write. */
		if (madvise(mem->base + r[0] * 4096, r[1] * 4096, MADV_POPULATE_READ) < 0 &&
		    madvise(mem->base + r[0] * 4096, r[1] * 4096, MADV_WILLNEED) < 0) {
			ret = -errno;
			break;
		}
		*nr_pages += r[1];
	}
	close(fd);
	return ret;
}
