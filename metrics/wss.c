/* Working-set sampling over a shared guest-RAM mapping; see wss.h. */
#include "metrics/wss.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PM_PRESENT (1ULL << 63)
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
	uint64_t want = cfg->sample_pages;
	if (!want || want >= w->nr_pages)
		w->stride = 1;
	else
		w->stride = (w->nr_pages + want - 1) / want;
	w->nr_samples = (w->nr_pages + w->stride - 1) / w->stride;
	w->pm_buf = malloc(PM_CHUNK * sizeof(uint64_t));
	w->mc_vec = malloc(w->nr_pages);
	if (!w->pm_buf || !w->mc_vec) {
		wss_destroy(w);
		return -ENOMEM;
	}
	return 0;
}

void wss_destroy(struct wss *w)
{
	free(w->pm_buf);
	free(w->mc_vec);
	w->pm_buf = NULL;
	w->mc_vec = NULL;
}

int wss_arm(struct wss *w)
{
	uint64_t t0 = now_ns();

	if (w->stride == 1) {
		if (madvise(w->base, w->nr_pages * WSS_PAGE_SIZE, MADV_DONTNEED))
			return -errno;
	} else {
		for (uint64_t k = 0; k < w->nr_samples; k++) {
			uint8_t *p = w->base + wss_sample_page(w, k) * WSS_PAGE_SIZE;
			if (madvise(p, WSS_PAGE_SIZE, MADV_DONTNEED))
				return -errno;
		}
	}
	w->armed = true;
	w->last_zap_ns = now_ns() - t0;
	return 0;
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

static int count_touched(const struct wss *w, uint64_t *touched)
{
	uint64_t t = 0;
	int ret;

	if (w->stride > PM_SPARSE_STRIDE) {
		for (uint64_t k = 0; k < w->nr_samples; k++) {
			uint64_t e;
			ret = pagemap_read(w, wss_sample_page(w, k), &e, 1);
			if (ret)
				return ret;
			t += !!(e & PM_PRESENT);
		}
		*touched = t;
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
		for (uint64_t k = k0; k < k0 + strata_per_chunk && k < w->nr_samples; k++)
			t += !!(w->pm_buf[wss_sample_page(w, k) - first] & PM_PRESENT);
	}
	*touched = t;
	return 0;
}

int wss_collect(struct wss *w, struct wss_result *r)
{
	uint64_t t0 = now_ns(), touched = 0, resident = 0;
	int ret;

	memset(r, 0, sizeof(*r));
	r->nr_pages = w->nr_pages;
	if (!w->armed) {
		ret = wss_arm(w);
		return ret ? ret : -EAGAIN;
	}
	ret = count_touched(w, &touched);
	if (ret)
		return ret;
	if (mincore(w->base, w->nr_pages * WSS_PAGE_SIZE, w->mc_vec) == 0)
		for (uint64_t i = 0; i < w->nr_pages; i++)
			resident += w->mc_vec[i] & 1;
	r->sampled = w->nr_samples;
	r->touched = touched;
	/* Each sample stands for its stratum (the last may be shorter: the
	 * scale is pages per sample overall). */
	r->estimate_bytes = (uint64_t)((double)touched * (double)w->nr_pages /
				       (double)w->nr_samples * WSS_PAGE_SIZE + 0.5);
	r->resident_bytes = resident * WSS_PAGE_SIZE;
	r->zap_ns = w->last_zap_ns;
	r->scan_ns = now_ns() - t0;
	w->epoch++;
	w->armed = false;
	return wss_arm(w);
}
