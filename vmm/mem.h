/* Guest RAM: one host mapping, split around the MMIO hole into at most two
 * KVM memory slots. Every guest-physical access goes through
 * guest_mem_gpa_to_hva(), which checks range and overflow. */
#ifndef MOTE_VMM_MEM_H
#define MOTE_VMM_MEM_H

#include <stddef.h>
#include <stdint.h>

#define GUEST_MEM_MAX_REGIONS 2

struct guest_mem_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	uint8_t *base;   /* host mapping of all guest RAM */
	uint64_t size;   /* total bytes of guest RAM */
	int fd;          /* backing fd, -1 for anonymous memory */
	unsigned nr_regions;
	struct guest_mem_region regions[GUEST_MEM_MAX_REGIONS];
};

/* Maps `size` bytes of guest RAM (MAP_SHARED, lazily populated). */
int guest_mem_init(struct guest_mem *mem, uint64_t size);
/* Lays out regions over an existing host buffer (used by tests and restore). */
int guest_mem_init_from_buffer(struct guest_mem *mem, void *buf, uint64_t size);
void guest_mem_destroy(struct guest_mem *mem);

/* Host address of [gpa, gpa+len) if it lies entirely within one RAM region;
 * NULL otherwise (out of range, crosses the MMIO hole, or overflows). */
void *guest_mem_gpa_to_hva(const struct guest_mem *mem, uint64_t gpa, uint64_t len);

/* Highest guest-physical address + 1 of RAM below the MMIO hole. */
uint64_t guest_mem_low_end(const struct guest_mem *mem);

/* Copies to/from guest memory; -EFAULT if the range is not RAM. */
int guest_mem_write(const struct guest_mem *mem, uint64_t gpa, const void *src, uint64_t len);
int guest_mem_read(const struct guest_mem *mem, uint64_t gpa, void *dst, uint64_t len);

#endif
