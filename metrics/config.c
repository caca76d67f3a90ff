/* --demand's argument and the metrics configuration's checks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/demand.h"
#include "metrics/metrics.h"

int metrics_config_finish(struct metrics_config *c, char *err, size_t errlen)
{
	if (!c->period_ms)
		c->period_ms = METRICS_DEFAULT_PERIOD_MS;
	if (!c->window)
		c->window = METRICS_DEFAULT_WINDOW;
	if (c->alpha == 0)
		c->alpha = METRICS_DEFAULT_ALPHA;
	if (!c->wss_sample_pages)
		c->wss_sample_pages = METRICS_DEFAULT_WSS_SAMPLES;
	if (!c->flush_ms)
		c->flush_ms = METRICS_DEFAULT_FLUSH_MS;
	if (!c->wss_period_ms)
		/* The smallest multiple of the period that is >= the default. */
		c->wss_period_ms = (METRICS_DEFAULT_WSS_PERIOD_MS + c->period_ms - 1) /
				   c->period_ms * c->period_ms;
	if (c->period_ms < METRICS_MIN_PERIOD_MS || c->period_ms > METRICS_MAX_PERIOD_MS) {
		snprintf(err, errlen, "demand period must be %d..%d ms, got %u",
			 METRICS_MIN_PERIOD_MS, METRICS_MAX_PERIOD_MS, c->period_ms);
		return -EINVAL;
	}
	if (c->window > DEMAND_WINDOW_MAX) {
		snprintf(err, errlen, "demand window must be 1..%d intervals, got %u",
			 DEMAND_WINDOW_MAX, c->window);
		return -EINVAL;
	}
	if (!(c->alpha > 0 && c->alpha <= 1)) {
		snprintf(err, errlen, "demand EWMA alpha must be in (0, 1], got %g", c->alpha);
		return -EINVAL;
	}
	if (c->wss_period_ms < c->period_ms || c->wss_period_ms % c->period_ms ||
	    c->wss_period_ms > METRICS_MAX_PERIOD_MS) {
		snprintf(err, errlen, "working-set period must be a multiple of the demand "
			 "period (%u ms), got %u", c->period_ms, c->wss_period_ms);
		return -EINVAL;
	}
	return 0;
}

static int parse_num(const char *key, const char *val, size_t len, double min, double max,
		     double *out, char *err, size_t errlen)
{
	char buf[32], *end;

	if (len == 0 || len >= sizeof(buf))
		goto bad;
	memcpy(buf, val, len);
	buf[len] = '\0';
	errno = 0;
	double v = strtod(buf, &end);
	if (errno || *end || !(v >= min && v <= max))
		goto bad;
	*out = v;
	return 0;
bad:
	snprintf(err, errlen, "--demand: %s must be a number between %g and %g, got '%.*s'", key,
		 min, max, (int)(len < 32 ? len : 32), val);
	return -EINVAL;
}

int metrics_parse_arg(const char *arg, struct metrics_config *cfg, char *err, size_t errlen)
{
	const char *p = arg;

	while (*p) {
		size_t tok = strcspn(p, ",");
		const char *eq = memchr(p, '=', tok);
		size_t klen = eq ? (size_t)(eq - p) : tok;
		const char *val = eq ? eq + 1 : p + tok;
		size_t vlen = eq ? tok - klen - 1 : 0;
		double v;

#define KEY(k) (klen == strlen(k) && !strncmp(p, k, klen))
		if (KEY("wss") && vlen == 3 && !strncmp(val, "off", 3)) {
			cfg->wss_off = true;
		} else if (KEY("wss") && vlen == 2 && !strncmp(val, "on", 2)) {
			cfg->wss_off = false;
		} else if (KEY("wss") && vlen == 9 && !strncmp(val, "dirty-log", 9)) {
			cfg->wss_off = false;
			cfg->wss_dirty_log = true;
		} else if (KEY("period-ms")) {
			if (parse_num("period-ms", val, vlen, METRICS_MIN_PERIOD_MS,
				      METRICS_MAX_PERIOD_MS, &v, err, errlen))
				return -EINVAL;
			cfg->period_ms = (unsigned)v;
		} else if (KEY("window")) {
			if (parse_num("window", val, vlen, 1, DEMAND_WINDOW_MAX, &v, err, errlen))
				return -EINVAL;
			cfg->window = (unsigned)v;
		} else if (KEY("alpha")) {
			if (parse_num("alpha", val, vlen, 1e-6, 1, &v, err, errlen))
				return -EINVAL;
			cfg->alpha = v;
		} else if (KEY("wss-samples")) {
			if (vlen == 3 && !strncmp(val, "all", 3))
				v = (double)UINT64_MAX;
			else if (parse_num("wss-samples", val, vlen, 1, 1e12, &v, err, errlen))
				return -EINVAL;
			cfg->wss_sample_pages = v >= 1.8e19 ? UINT64_MAX : (uint64_t)v;
		} else if (KEY("wss-period-ms")) {
			if (parse_num("wss-period-ms", val, vlen, METRICS_MIN_PERIOD_MS,
				      METRICS_MAX_PERIOD_MS, &v, err, errlen))
				return -EINVAL;
			cfg->wss_period_ms = (unsigned)v;
		} else if (KEY("flush-ms")) {
			if (parse_num("flush-ms", val, vlen, 100, 86400000, &v, err, errlen))
				return -EINVAL;
			cfg->flush_ms = (unsigned)v;
		} else {
			snprintf(err, errlen, "--demand: unknown setting '%.*s' (period-ms, window, "
				 "alpha, wss=on|off|dirty-log, wss-samples, wss-period-ms, flush-ms)",
				 (int)(tok < 64 ? tok : 64), p);
			return -EINVAL;
		}
#undef KEY
		p += tok;
		if (*p == ',')
			p++;
	}
	return 0;
}
