/* Working-set sampling over a shared guest-RAM mapping; see wss.h. */
#include "metrics/wss.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PM_PRESENT (1ULL << 63)
#define PM_SWAP (1ULL << 62)
#define PM_FILE (1ULL << 61) /* page cache (or shared anonymous), not a private copy */
#define PM_CHUNK 4096            /* pagemap entries per pread (32 KiB) */
/* Above this stride, one 8-byte pread per sample beats reading every
 * entry of the range. */
#define PM_SPARSE_STRIDE 64

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* splitmix64: cheap, well spread, deterministic for a seed. */
static uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

uint64_t wss_sample_page(const struct wss *w, uint64_t k)
{
	uint64_t first = k * w->stride;
	uint64_t span = w->nr_pages - first < w->stride ? w->nr_pages - first : w->stride;

	if (span <= 1)
		return first;
	return first + mix64(w->seed ^ mix64(k) ^ (w->epoch * 0x2545f4914f6cdd1dULL)) % span;
}

int wss_init(struct wss *w, void *base, uint64_t size, const struct wss_config *cfg,
	     int pagemap_fd)
{
	memset(w, 0, sizeof(*w));
	w->pagemap_fd = -1;
	if (!base || size < WSS_PAGE_SIZE || ((uintptr_t)base | size) & (WSS_PAGE_SIZE - 1) ||
	    pagemap_fd < 0)
		return -EINVAL;
	w->base = base;
	w->nr_pages = size / WSS_PAGE_SIZE;
	w->pagemap_fd = pagemap_fd;
	w->seed = cfg->seed;
	w->private_map = cfg->private_map;
	uint64_t want = cfg->sample_pages;
	if (!want || want >= w->nr_pages)
		w->stride = 1;
	else
		w->stride = (w->nr_pages + want - 1) / want;
	w->nr_samples = (w->nr_pages + w->stride - 1) / w->stride;
	w->pm_buf = malloc(PM_CHUNK * sizeof(uint64_t));
	w->mc_vec = malloc(w->nr_pages);
	w->by_log = calloc((w->nr_samples + 63) / 64, sizeof(uint64_t));
	w->cand = w->private_map ? malloc(w->nr_samples * sizeof(uint32_t)) : NULL;
	if (!w->pm_buf || !w->mc_vec || !w->by_log || (w->private_map && !w->cand) ||
	    w->nr_samples > UINT32_MAX) {
		wss_destroy(w);
		return -ENOMEM;
	}
	return 0;
}

void wss_destroy(struct wss *w)
{
	free(w->pm_buf);
	free(w->mc_vec);
	free(w->by_log);
	free(w->cand);
	w->cand = NULL;
	w->pm_buf = NULL;
	w->mc_vec = NULL;
	w->by_log = NULL;
}

static int pagemap_read(const struct wss *w, uint64_t first_page, uint64_t *dst, uint64_t n)
{
	off_t off = (off_t)(((uintptr_t)w->base / WSS_PAGE_SIZE + first_page) * sizeof(uint64_t));
	size_t len = n * sizeof(uint64_t);
	ssize_t got = pread(w->pagemap_fd, dst, len, off);

	if (got < 0)
		return -errno;
	return (size_t)got == len ? 0 : -EIO;
}

typedef int (*sample_fn)(struct wss *w, uint64_t k, uint64_t page, uint64_t entry, void *arg);

/* Calls fn with the pagemap entry of every sample page, in page order. */
static int for_each_sample(struct wss *w, sample_fn fn, void *arg)
{
	int ret;

	if (w->stride > PM_SPARSE_STRIDE) {
		for (uint64_t k = 0; k < w->nr_samples; k++) {
			uint64_t e, page = wss_sample_page(w, k);
			ret = pagemap_read(w, page, &e, 1);
			if (!ret)
				ret = fn(w, k, page, e, arg);
			if (ret)
				return ret;
		}
		return 0;
	}
	/* Whole strata per chunk, so each sample's entry is in the buffer. */
	uint64_t strata_per_chunk = PM_CHUNK / w->stride;
	for (uint64_t k0 = 0; k0 < w->nr_samples; k0 += strata_per_chunk) {
		uint64_t first = k0 * w->stride;
		uint64_t n = strata_per_chunk * w->stride;
		if (n > w->nr_pages - first)
			n = w->nr_pages - first;
		ret = pagemap_read(w, first, w->pm_buf, n);
		if (ret)
			return ret;
		for (uint64_t k = k0; k < k0 + strata_per_chunk && k < w->nr_samples; k++) {
			uint64_t page = wss_sample_page(w, k);
			ret = fn(w, k, page, w->pm_buf[page - first], arg);
			if (ret)
				return ret;
		}
	}
	return 0;
}

/* Private mode zaps runs of adjacent pages with one madvise. */
struct zap_run {
	uint64_t first, n;
};

static int zap_flush(struct wss *w, struct zap_run *run)
{
	if (run->n && madvise(w->base + run->first * WSS_PAGE_SIZE, run->n * WSS_PAGE_SIZE,
			      MADV_DONTNEED))
		return -errno;
	run->n = 0;
	return 0;
}

static int arm_private_sample(struct wss *w, uint64_t k, uint64_t page, uint64_t e, void *arg)
{
	struct zap_run *run = arg;
	uint64_t bit = 1ULL << (k % 64);

	if ((e & PM_PRESENT) && (e & PM_FILE)) {
		/* Still the file's page (never written by this clone): it
		 * comes back from the page cache. */
		w->by_log[k / 64] &= ~bit;
		w->last_zapped++;
		if (run->n && run->first + run->n == page) {
			run->n++;
			return 0;
		}
		int ret = zap_flush(w, run);
		run->first = page;
		run->n = 1;
		return ret;
	}
	if (e & (PM_PRESENT | PM_SWAP))
		/* A private copy: its only copy of the data. Never zapped. */
		w->by_log[k / 64] |= bit;
	else
		/* Not mapped: nothing to zap, a touch maps it. */
		w->by_log[k / 64] &= ~bit;
	return 0;
}

static int prepare_private_sample(struct wss *w, uint64_t k, uint64_t page, uint64_t e,
				  void *arg)
{
	uint64_t bit = 1ULL << (k % 64);

	(void)page;
	(void)arg;
	w->by_log[k / 64] &= ~bit;
	if ((e & PM_PRESENT) && (e & PM_FILE))
		w->cand[w->nr_cand++] = (uint32_t)k;
	else if (e & (PM_PRESENT | PM_SWAP))
		/* A private copy stays one until zapped, and only the arm
		 * zaps (file-backed pages): no need to look again. */
		w->by_log[k / 64] |= bit;
	return 0;
}

int wss_arm_prepare(struct wss *w)
{
	int ret;

	if (!w->private_map)
		return 0;
	w->nr_cand = 0;
	w->prepared = false;
	ret = for_each_sample(w, prepare_private_sample, NULL);
	if (ret)
		return ret;
	w->prepared = true;
	return 0;
}

/* Prepared: only the samples that were file-backed, each looked at again
 * (it may have become a private copy since) right before its zap. */
static int arm_private_prepared(struct wss *w, struct zap_run *run)
{
	for (uint64_t i = 0; i < w->nr_cand; i++) {
		uint64_t k = w->cand[i], page = wss_sample_page(w, k), e;
		int ret = pagemap_read(w, page, &e, 1);
		if (!ret)
			ret = arm_private_sample(w, k, page, e, run);
		if (ret)
			return ret;
	}
	return 0;
}

int wss_arm(struct wss *w)
{
	uint64_t t0 = now_ns();
	int ret;

	w->last_zapped = 0;
	if (w->private_map) {
		struct zap_run run = { 0, 0 };
		ret = w->prepared ? arm_private_prepared(w, &run)
				  : for_each_sample(w, arm_private_sample, &run);
		w->prepared = false;
		if (!ret)
			ret = zap_flush(w, &run);
		if (ret)
			return ret;
	} else if (w->stride == 1) {
		if (madvise(w->base, w->nr_pages * WSS_PAGE_SIZE, MADV_DONTNEED))
			return -errno;
		w->last_zapped = w->nr_pages;
	} else {
		for (uint64_t k = 0; k < w->nr_samples; k++) {
			uint8_t *p = w->base + wss_sample_page(w, k) * WSS_PAGE_SIZE;
			if (madvise(p, WSS_PAGE_SIZE, MADV_DONTNEED))
				return -errno;
		}
		w->last_zapped = w->nr_samples;
	}
	w->armed = true;
	w->last_zap_ns = now_ns() - t0;
	return 0;
}

struct count_state {
	const uint64_t *written;
	uint64_t touched, by_log;
};

static int count_sample(struct wss *w, uint64_t k, uint64_t page, uint64_t e, void *arg)
{
	struct count_state *cs = arg;

	if (w->private_map && (w->by_log[k / 64] >> (k % 64)) & 1) {
		cs->by_log++;
		cs->touched += (cs->written[page / 64] >> (page % 64)) & 1;
	} else {
		cs->touched += !!(e & PM_PRESENT);
	}
	return 0;
}

int wss_count(struct wss *w, const uint64_t *written, struct wss_result *r)
{
	uint64_t t0 = now_ns(), resident = 0;
	struct count_state cs = { .written = written };
	int ret;

	memset(r, 0, sizeof(*r));
	r->nr_pages = w->nr_pages;
	if (w->private_map && !written)
		return -EINVAL;
	if (!w->armed)
		return -EAGAIN;
	ret = for_each_sample(w, count_sample, &cs);
	if (ret)
		return ret;
	if (mincore(w->base, w->nr_pages * WSS_PAGE_SIZE, w->mc_vec) == 0)
		for (uint64_t i = 0; i < w->nr_pages; i++)
			resident += w->mc_vec[i] & 1;
	r->sampled = w->nr_samples;
	r->touched = cs.touched;
	r->dirty_sampled = cs.by_log;
	r->zapped = w->last_zapped;
	/* Each sample stands for its stratum (the last may be shorter: the
	 * scale is pages per sample overall). */
	r->estimate_bytes = (uint64_t)((double)cs.touched * (double)w->nr_pages /
				       (double)w->nr_samples * WSS_PAGE_SIZE + 0.5);
	r->resident_bytes = resident * WSS_PAGE_SIZE;
	r->zap_ns = w->last_zap_ns;
	r->scan_ns = now_ns() - t0;
	w->epoch++;
	w->armed = false;
	w->prepared = false; /* the sample positions moved */
	return 0;
}

int wss_collect(struct wss *w, struct wss_result *r)
{
	int ret;

	if (w->private_map)
		return -EINVAL;
	ret = wss_count(w, NULL, r);
	if (ret && ret != -EAGAIN)
		return ret;
	int arm = wss_arm(w);
	return arm ? arm : ret;
}
