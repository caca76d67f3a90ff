/* Working-set estimation of guest RAM without guest cooperation.
 *
 * Guest accesses go through KVM's own page tables, so the host's
 * Referenced bits never see them. What does: guest RAM is a MAP_SHARED
 * (shmem) mapping; MADV_DONTNEED on a page drops the host's mapping (and
 * KVM's, through the MMU notifier) while the data stays in shmem. The
 * guest's next access to that page faults it back in. After an interval,
 * /proc/self/pagemap bit 63 (present) says which zapped pages came back:
 * the ones touched, read or written, by the guest (or by the monitor's
 * devices on its behalf).
 *
 * Sampled as VMware ESX does: one page per stratum of `stride` pages, at
 * a pseudo-random position that changes every interval, so the cost is
 * per sample, not per page, and the estimate scales up by the stride.
 *
 * A MAP_PRIVATE mapping (a restored clone's guest RAM, the snapshot's
 * memory file) needs care: zapping a page the clone privately wrote (an
 * anonymous copy-on-write copy) throws its data away. In private mode
 * (wss_config.private_map) the arm reads each sample's pagemap entry and
 * zaps only pages still backed by the file (PM_FILE, bit 61), which fault
 * back in from the page cache; a sample that is an anonymous copy (or
 * swapped out) is never zapped, and counts as touched when the caller's
 * bitmap of pages written in the interval (KVM's dirty log) says so. What
 * that misses: reads of privately written pages. The check and the zap
 * are two steps, so in private mode the caller must stop every writer of
 * guest RAM across wss_arm (vCPUs paused, no device I/O in flight). */
#ifndef MOTE_METRICS_WSS_H
#define MOTE_METRICS_WSS_H

#include <stdbool.h>
#include <stdint.h>

#define WSS_PAGE_SIZE 4096u

struct wss_config {
	uint64_t sample_pages; /* pages watched per interval; 0 or >= all: every page */
	uint64_t seed;         /* for the sample positions */
	bool private_map;      /* MAP_PRIVATE: zap only file-backed pages */
};

struct wss_result {
	uint64_t nr_pages;       /* of guest RAM */
	uint64_t sampled;        /* pages watched in the interval */
	uint64_t touched;        /* of those, touched */
	uint64_t estimate_bytes; /* working set scaled up from the sample */
	uint64_t resident_bytes; /* guest RAM backed by host memory (mincore) */
	uint64_t zap_ns;         /* cost of arming the interval that ended */
	uint64_t scan_ns;        /* cost of reading pagemap and mincore now */
	/* Private mode: samples that were anonymous copies at the arm (told
	 * by the written bitmap), and those zapped. */
	uint64_t dirty_sampled;
	uint64_t zapped;
};

struct wss {
	uint8_t *base;
	uint64_t nr_pages;
	uint64_t stride;      /* pages per stratum; 1: every page */
	uint64_t nr_samples;  /* strata */
	uint64_t seed;
	uint64_t epoch;       /* which sample positions are armed */
	bool armed;
	int pagemap_fd;       /* /proc/self/pagemap, opened by the caller */
	uint64_t *pm_buf;     /* pagemap chunk */
	unsigned char *mc_vec; /* mincore vector, one byte per page */
	uint64_t last_zap_ns;
	bool private_map;
	uint64_t *by_log;      /* private: bit k = sample k watched by the written bitmap */
	uint64_t last_zapped;
	uint32_t *cand;        /* private, prepared: samples that were file-backed */
	uint64_t nr_cand;
	bool prepared;
};

/* base/size: the host mapping of guest RAM (page aligned; MAP_SHARED
 * unless cfg->private_map). pagemap_fd stays the caller's. 0 or
 * -EINVAL/-ENOMEM. */
int wss_init(struct wss *w, void *base, uint64_t size, const struct wss_config *cfg,
	     int pagemap_fd);
void wss_destroy(struct wss *w);
/* Private mode, optional, with the writers still running: classifies
 * every sample now, so that wss_arm (with the writers stopped) re-reads
 * and zaps only the samples that were file-backed here: a shorter stop.
 * A sample unmapped here and touched before wss_arm counts as touched in
 * the interval (an overcount of at most that short gap). 0 or -errno. */
int wss_arm_prepare(struct wss *w);
/* Zaps this interval's sample pages (private mode: the file-backed ones,
 * with the writers stopped). 0 or -errno. */
int wss_arm(struct wss *w);
/* Counts which armed pages were touched and moves the sample positions;
 * does not arm. written: a bit per page (from base) written during the
 * interval; required in private mode, ignored otherwise. -EAGAIN if
 * nothing was armed. */
int wss_count(struct wss *w, const uint64_t *written, struct wss_result *r);
/* Shared mode: wss_count, then wss_arm for the next interval (the first
 * call only arms and returns -EAGAIN). -EINVAL in private mode. */
int wss_collect(struct wss *w, struct wss_result *r);
/* The sample page of stratum k at this epoch (exposed for tests). */
uint64_t wss_sample_page(const struct wss *w, uint64_t k);

#endif
