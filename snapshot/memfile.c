/* The memory file: guest RAM written sparsely, then the footer page.
 *
 * Which pages can hold data is asked of the kernel rather than read: the
 * RAM of a booted VM is a memfd, whose SEEK_DATA extents are exactly the
 * pages ever written (or allocated); a restored VM's RAM is a MAP_PRIVATE
 * mapping of the previous memory file, so its data is that file's extents
 * plus the pages the VM copied on write (anonymous pages in
 * /proc/self/pagemap). Among those, all-zero pages are skipped too. */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snapshot/memfile.h"

#define PAGE 4096ULL
#define PAGEMAP_PRESENT (1ULL << 63)
#define PAGEMAP_SWAPPED (1ULL << 62)
#define PAGEMAP_FILE    (1ULL << 61)
#define WRITE_RUN_MAX   (8ULL << 20)
#define PAGEMAP_CHUNK   4096

static void bit_set(uint8_t *bm, uint64_t i)
{
	bm[i / 8] |= (uint8_t)(1u << (i % 8));
}

static bool bit_get(const uint8_t *bm, uint64_t i)
{
	return bm[i / 8] & (1u << (i % 8));
}

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *q = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE / 8; i += 4)
		if (q[i] | q[i + 1] | q[i + 2] | q[i + 3])
			return false;
	return true;
}

/* Marks the pages of fd's data extents in [0, size). */
static int mark_file_extents(int fd, uint64_t size, uint8_t *bm)
{
	off_t off = 0;

	while ((uint64_t)off < size) {
		off_t data = lseek(fd, off, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? 0 : -errno;
		if ((uint64_t)data >= size)
			return 0;
		off_t hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		uint64_t end = (uint64_t)hole < size ? (uint64_t)hole : size;
		for (uint64_t p = (uint64_t)data / PAGE; p * PAGE < end; p++)
			bit_set(bm, p);
		off = hole;
	}
	return 0;
}

/* /proc/self/pagemap, opened before the VMM thread's seccomp filter (which
 * lets it create files to write, not open files to read). */
static int pagemap_fd = -1;

int memfile_pagemap_fd(void)
{
	if (pagemap_fd < 0)
		pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	return pagemap_fd;
}

/* Marks the pages of [base, base+size) this process wrote privately. */
static int mark_private_pages(const uint8_t *base, uint64_t size, uint8_t *bm)
{
	uint64_t entries[PAGEMAP_CHUNK];
	int fd = memfile_pagemap_fd();
	int ret = 0;

	if (fd < 0)
		return -errno;
	uint64_t npages = size / PAGE, first = (uintptr_t)base / PAGE;
	for (uint64_t p = 0; p < npages; p += PAGEMAP_CHUNK) {
		uint64_t n = npages - p < PAGEMAP_CHUNK ? npages - p : PAGEMAP_CHUNK;
		ssize_t got = pread(fd, entries, n * 8, (off_t)((first + p) * 8));
		if (got != (ssize_t)(n * 8)) {
			ret = got < 0 ? -errno : -EIO;
			break;
		}
		for (uint64_t i = 0; i < n; i++) {
			uint64_t e = entries[i];
			if ((e & PAGEMAP_SWAPPED) || ((e & PAGEMAP_PRESENT) && !(e & PAGEMAP_FILE)))
				bit_set(bm, p + i);
		}
	}
	return ret;
}

static int write_all(int fd, const uint8_t *p, uint64_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (uint64_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int memfile_write(int out, const struct guest_mem *mem, const uint64_t *only, bool keep_zero,
		  struct memfile_stats *stats)
{
	uint64_t npages = mem->size / PAGE;
	uint8_t *bm = NULL;
	int ret;

	memset(stats, 0, sizeof(*stats));
	bm = calloc(1, (size_t)(npages + 7) / 8);
	if (!bm)
		return -ENOMEM;
	if (only) {
		for (uint64_t p = 0; p < npages; p++)
			if (only[p / 64] & (1ULL << (p % 64)))
				bit_set(bm, p);
	} else {
		if (mem->fd >= 0 && !mem->uffd) {
			ret = mark_file_extents(mem->fd, mem->size, bm);
			if (ret)
				goto out;
		} else {
			memset(bm, 0xff, (size_t)(npages + 7) / 8);
		}
		if (mem->private_file) {
			ret = mark_private_pages(mem->base, mem->size, bm);
			if (ret)
				goto out;
		}
	}
	uint64_t run_start = 0, run_len = 0;
	for (uint64_t p = 0; p <= npages; p++) {
		bool keep = false;

		if (p < npages && bit_get(bm, p)) {
			stats->candidate_pages++;
			keep = keep_zero || !page_is_zero(mem->base + p * PAGE);
		}
		if (keep && run_len && run_len * PAGE < WRITE_RUN_MAX) {
			run_len++;
			continue;
		}
		if (run_len) {
			ret = write_all(out, mem->base + run_start * PAGE, run_len * PAGE,
					run_start * PAGE);
			if (ret)
				goto out;
			stats->written_pages += run_len;
			run_len = 0;
		}
		if (keep) {
			run_start = p;
			run_len = 1;
		}
	}
	ret = 0;
out:
	free(bm);
	return ret;
}

uint32_t memfile_footer_crc(const struct snap_mem_footer *f)
{
	return snap_crc32(0, f, offsetof(struct snap_mem_footer, crc));
}

int memfile_write_footer(int out, uint64_t mem_bytes, uint64_t id, uint64_t parent, bool diff)
{
	uint8_t page[SNAP_MEM_FOOTER_SIZE];
	struct snap_mem_footer f = { .snapshot_id = id, .mem_bytes = mem_bytes,
				     .parent_id = parent, .diff = diff };

	memcpy(f.magic, SNAP_MEM_MAGIC, 8);
	f.crc = memfile_footer_crc(&f);
	memset(page, 0, sizeof(page));
	memcpy(page, &f, sizeof(f));
	if (ftruncate(out, (off_t)(mem_bytes + SNAP_MEM_FOOTER_SIZE)) < 0)
		return -errno;
	return write_all(out, page, sizeof(page), mem_bytes);
}

int memfile_read_footer(int fd, uint64_t file_size, struct snap_mem_footer *f)
{
	if (file_size < SNAP_MEM_FOOTER_SIZE)
		return -EINVAL;
	ssize_t n = pread(fd, f, sizeof(*f), (off_t)(file_size - SNAP_MEM_FOOTER_SIZE));
	if (n != (ssize_t)sizeof(*f))
		return n < 0 ? -errno : -EIO;
	if (memcmp(f->magic, SNAP_MEM_MAGIC, 8) || f->crc != memfile_footer_crc(f))
		return -EINVAL;
	return 0;
}
