#include "vmm/mem.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/dirty_log.h"
#include "vmm/layout.h"

static void guest_mem_layout_regions(struct guest_mem *mem)
{
	uint64_t low = mem->size;

	if (low > LAYOUT_MMIO_HOLE_START)
		low = LAYOUT_MMIO_HOLE_START;
	mem->regions[0] = (struct guest_mem_region){ .gpa = 0, .size = low, .hva = mem->base };
	mem->nr_regions = 1;
	if (mem->size > low) {
		mem->regions[1] = (struct guest_mem_region){
			.gpa = LAYOUT_MMIO_HOLE_END,
			.size = mem->size - low,
			.hva = mem->base + low,
		};
		mem->nr_regions = 2;
	}
}

int guest_mem_init_from_buffer(struct guest_mem *mem, void *buf, uint64_t size)
{
	if (!buf || size < LAYOUT_HIMEM_START || (size & 0xfff))
		return -EINVAL;
	memset(mem, 0, sizeof(*mem));
	mem->base = buf;
	mem->size = size;
	mem->fd = -1;
	guest_mem_layout_regions(mem);
	return 0;
}

int guest_mem_init(struct guest_mem *mem, uint64_t size)
{
	void *buf;
	int fd, ret;

	if (size < LAYOUT_HIMEM_START || (size & 0xfff))
		return -EINVAL;
	/* A memfd rather than anonymous shared memory: the same shmem pages,
	 * but snapshots can ask it where the data is (SEEK_DATA). */
	fd = memfd_create("mote-guest-ram", MFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	/* MAP_SHARED so the working-set tracker can zap host PTEs without
	 * losing data; MAP_NORESERVE because guests rarely touch all of it. */
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (buf == MAP_FAILED) {
		ret = -errno;
		close(fd);
		return ret;
	}
	ret = guest_mem_init_from_buffer(mem, buf, size);
	if (ret) {
		munmap(buf, size);
		close(fd);
		return ret;
	}
	mem->fd = fd;
	return 0;
}

int guest_mem_init_file(struct guest_mem *mem, int fd, uint64_t size)
{
	void *buf;
	int ret;

	if (size < LAYOUT_HIMEM_START || (size & 0xfff))
		return -EINVAL;
	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
	if (buf == MAP_FAILED)
		return -errno;
	ret = guest_mem_init_from_buffer(mem, buf, size);
	if (ret) {
		munmap(buf, size);
		return ret;
	}
	mem->fd = fd;
	mem->private_file = true;
	return 0;
}

int guest_mem_track_dirty(struct guest_mem *mem)
{
	if (!mem->dirty)
		mem->dirty = calloc((mem->size / 4096 + 63) / 64, sizeof(uint64_t));
	return mem->dirty ? 0 : -ENOMEM;
}

void guest_mem_destroy(struct guest_mem *mem)
{
	free(mem->dirty);
	mem->dirty = NULL;
	if (mem->kvm_log) {
		dirty_log_destroy(mem->kvm_log);
		free(mem->kvm_log);
		mem->kvm_log = NULL;
	}
	if (mem->base)
		munmap(mem->base, mem->size);
	mem->base = NULL;
	if (mem->fd >= 0)
		close(mem->fd);
	mem->fd = -1;
}

void *guest_mem_gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len)
{
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];

		if (gpa < r->gpa)
			continue;
		uint64_t off = gpa - r->gpa;
		/* off < size and len <= size - off: no overflow possible. */
		if (off < r->size && len <= r->size - off)
			return r->hva + off;
		if (off < r->size && len > r->size - off)
			return NULL; /* crosses the end of this region */
	}
	return NULL;
}

uint64_t guest_mem_low_end(const struct guest_mem *mem)
{
	return mem->regions[0].size;
}

int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len)
{
	void *dst = guest_mem_gpa_to_hva(mem, gpa, len);

	if (!dst)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len)
{
	const void *src = guest_mem_gpa_to_hva(mem, gpa, len);

	if (!src)
		return -EFAULT;
	memcpy(dst, src, len);
	return 0;
}

void guest_mem_zero(void *hva, uint64_t len)
{
	const uintptr_t page = 4096;
	uintptr_t start = (uintptr_t)hva, end = start + len;
	uintptr_t first = (start + page - 1) & ~(page - 1), last = end & ~(page - 1);

	if (len == 0)
		return;
	if (first >= last || madvise((void *)first, last - first, MADV_REMOVE)) {
		memset(hva, 0, len);
		return;
	}
	memset(hva, 0, first - start);
	memset((void *)last, 0, end - last);
}
