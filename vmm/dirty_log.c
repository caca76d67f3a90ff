/* KVM's dirty page log shared by its consumers; see dirty_log.h. */
#include "vmm/dirty_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "vmm/vm.h"

int dirty_log_init(struct dirty_log *d, uint64_t mem_bytes)
{
	memset(d, 0, sizeof(*d));
	if (mem_bytes < 4096)
		return -EINVAL;
	d->nr_pages = mem_bytes / 4096;
	d->words = dirty_log_words(mem_bytes);
	for (unsigned c = 0; c < DIRTY_LOG_NR; c++) {
		d->acc[c] = calloc(d->words, sizeof(uint64_t));
		if (!d->acc[c])
			goto fail;
	}
	/* A slot is never larger than guest RAM. */
	d->slot_buf = calloc(d->words, sizeof(uint64_t));
	if (!d->slot_buf)
		goto fail;
	return 0;
fail:
	dirty_log_destroy(d);
	return -ENOMEM;
}

void dirty_log_destroy(struct dirty_log *d)
{
	for (unsigned c = 0; c < DIRTY_LOG_NR; c++) {
		free(d->acc[c]);
		d->acc[c] = NULL;
	}
	free(d->slot_buf);
	d->slot_buf = NULL;
}

void dirty_log_merge(struct dirty_log *d, uint64_t first_page, const uint64_t *slot_bm,
		     uint64_t slot_pages)
{
	if (first_page >= d->nr_pages)
		return;
	if (slot_pages > d->nr_pages - first_page)
		slot_pages = d->nr_pages - first_page;
	for (uint64_t w = 0; w < (slot_pages + 63) / 64; w++) {
		uint64_t bits = slot_bm[w];
		if (!bits)
			continue;
		while (bits) {
			uint64_t p = w * 64 + (uint64_t)__builtin_ctzll(bits);
			bits &= bits - 1;
			if (p >= slot_pages)
				break;
			uint64_t g = first_page + p;
			for (unsigned c = 0; c < DIRTY_LOG_NR; c++)
				d->acc[c][g / 64] |= 1ULL << (g % 64);
		}
	}
}

void dirty_log_take_merged(struct dirty_log *d, enum dirty_log_consumer c, uint64_t *out)
{
	memcpy(out, d->acc[c], d->words * sizeof(uint64_t));
	memset(d->acc[c], 0, d->words * sizeof(uint64_t));
}

int dirty_log_enable(struct vm *vm)
{
	for (unsigned i = 0; i < vm->mem.nr_regions; i++) {
		const struct guest_mem_region *r = &vm->mem.regions[i];
		struct kvm_userspace_memory_region s = {
			.slot = i,
			.guest_phys_addr = r->gpa,
			.memory_size = r->size,
			.userspace_addr = (uint64_t)(uintptr_t)r->hva,
			.flags = KVM_MEM_LOG_DIRTY_PAGES,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &s) < 0)
			return -errno;
	}
	return 0;
}

int dirty_log_fetch(struct vm *vm)
{
	struct guest_mem *mem = &vm->mem;

	if (!mem->kvm_log) {
		struct dirty_log *d = malloc(sizeof(*d));
		int ret = d ? dirty_log_init(d, mem->size) : -ENOMEM;
		if (ret) {
			free(d);
			return ret;
		}
		mem->kvm_log = d;
	}
	struct dirty_log *d = mem->kvm_log;
	for (unsigned i = 0; i < mem->nr_regions; i++) {
		const struct guest_mem_region *r = &mem->regions[i];
		uint64_t pages = r->size / 4096;
		struct kvm_dirty_log kl = { .slot = i, .dirty_bitmap = d->slot_buf };

		/* KVM fills whole 64-bit words; the buffer has room for all of
		 * guest RAM. Its answer covers the writes since the previous
		 * call, whoever asked: hence the per-consumer bitmaps. */
		memset(d->slot_buf, 0, (pages + 63) / 64 * sizeof(uint64_t));
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &kl) < 0)
			return -errno;
		dirty_log_merge(d, (uint64_t)(r->hva - mem->base) / 4096, d->slot_buf, pages);
	}
	d->fetches++;
	return 0;
}

int dirty_log_take(struct vm *vm, enum dirty_log_consumer c, uint64_t *out)
{
	int ret = dirty_log_fetch(vm);

	if (ret)
		return ret;
	dirty_log_take_merged(vm->mem.kvm_log, c, out);
	return 0;
}
