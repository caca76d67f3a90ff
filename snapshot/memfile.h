/* Writing and checking snapshot memory files (see snapshot.h for the
 * layout). Internal to snapshot/. */
#ifndef MOTE_SNAPSHOT_MEMFILE_H
#define MOTE_SNAPSHOT_MEMFILE_H

#include <stdbool.h>
#include <stdint.h>

#include "snapshot/snapshot.h"
#include "vmm/mem.h"

struct memfile_stats {
	uint64_t candidate_pages; /* pages that could hold data */
	uint64_t written_pages;   /* of those, not all zero: written */
};

/* Writes the guest RAM pages that hold data to `out` (an empty file) at
 * their offsets, leaving holes elsewhere. only: a page bitmap (64 pages a
 * word) restricting the pages to consider (diff snapshots), NULL for all
 * that may hold data. keep_zero: write all-zero pages too (a diff must
 * carry a page the guest zeroed, and holes mean "not in this diff"). */
int memfile_write(int out, const struct guest_mem *mem, const uint64_t *only, bool keep_zero,
		  struct memfile_stats *stats);
/* Sizes the file to mem_bytes + the footer page and writes the footer. */
int memfile_write_footer(int out, uint64_t mem_bytes, uint64_t id, uint64_t parent, bool diff);
/* Reads and checks the footer of a file_size-byte memory file: -EINVAL if
 * it has none (or a damaged one). */
int memfile_read_footer(int fd, uint64_t file_size, struct snap_mem_footer *f);
uint32_t memfile_footer_crc(const struct snap_mem_footer *f);
/* This process's /proc/self/pagemap, opened once (-1 with errno). */
int memfile_pagemap_fd(void);

#endif
