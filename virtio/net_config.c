/* virtio-net configuration: --net arguments and MAC addresses. Apart from
 * the device so that the API's schema (and its fuzzer) can use it alone. */
#include "virtio/net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/devargs.h"

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int net_parse_mac(const char *s, uint8_t mac[6])
{
	uint8_t out[6];

	for (int i = 0; i < 6; i++) {
		int hi = hexval(s[3 * i]), lo = hi < 0 ? -1 : hexval(s[3 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		char sep = s[3 * i + 2];
		if (i < 5 ? sep != ':' : sep != '\0')
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	/* A guest with a multicast source address breaks every switch. */
	if (out[0] & 1)
		return -EINVAL;
	memcpy(mac, out, 6);
	return 0;
}

void net_derive_mac(const char *vm_id, const char *iface_id, uint8_t mac[6])
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	const char *parts[] = { vm_id ? vm_id : "", "/", iface_id ? iface_id : "" };

	for (int p = 0; p < 3; p++)
		for (const char *c = parts[p]; *c; c++)
			h = (h ^ (uint8_t)*c) * 0x100000001b3ULL;
	/* 06:..: locally administered, unicast (as Firecracker's examples). */
	mac[0] = 0x06;
	for (int i = 1; i < 6; i++)
		mac[i] = (uint8_t)(h >> (8 * (i - 1)));
}

int net_parse_arg(const char *arg, struct net_config *cfg, char *err, size_t errlen)
{
	struct devargs it;
	struct devarg a;
	int ret = 0;

	if (devargs_open(&it, arg))
		return -ENOMEM;
	memset(cfg, 0, sizeof(*cfg));
	while (devargs_next(&it, &a)) {
		const char *val = a.val;
		uint64_t v;

		if (!val) {
			ret = -EINVAL;
		} else if (devarg_is(&a, "tap")) {
			if (!*val || strlen(val) > NET_TAP_NAME_MAX) {
				snprintf(err, errlen, "--net tap '%s' must be 1-%d characters", val,
					 NET_TAP_NAME_MAX);
				ret = -EINVAL;
				break;
			}
			strcpy(cfg->tap, val);
		} else if (devarg_is(&a, "mac")) {
			if (net_parse_mac(val, cfg->mac)) {
				snprintf(err, errlen, "--net mac '%s' is not a unicast MAC address like "
					 "06:00:ac:10:00:02", val);
				ret = -EINVAL;
				break;
			}
			cfg->has_mac = true;
		} else if (devarg_is(&a, "id")) {
			size_t len = strlen(val);
			bool ok = len && len <= NET_ID_MAX;
			for (size_t i = 0; ok && i < len; i++)
				ok = (val[i] >= 'a' && val[i] <= 'z') || (val[i] >= 'A' && val[i] <= 'Z') ||
				     (val[i] >= '0' && val[i] <= '9') || val[i] == '_';
			if (!ok) {
				snprintf(err, errlen, "--net id '%s' must be 1-%d letters, digits or '_'",
					 val, NET_ID_MAX);
				ret = -EINVAL;
				break;
			}
			strcpy(cfg->id, val);
		} else if (devarg_is(&a, "mtu") && !devarg_u64(val, &v) && v >= 68 && v <= 65535) {
			cfg->mtu = (uint16_t)v;
		} else if (!devarg_u64(val, &v) && v && v <= INT64_MAX &&
			   (devarg_is(&a, "rx-bw") || devarg_is(&a, "tx-bw") ||
			    devarg_is(&a, "rx-ops") || devarg_is(&a, "tx-ops"))) {
			struct token_bucket_config tb = { .size = v, .refill_time_ms = 1000 };
			if (devarg_is(&a, "rx-bw"))
				cfg->rx_bw = tb;
			else if (devarg_is(&a, "tx-bw"))
				cfg->tx_bw = tb;
			else if (devarg_is(&a, "rx-ops"))
				cfg->rx_ops = tb;
			else
				cfg->tx_ops = tb;
		} else {
			ret = -EINVAL;
		}
		if (ret) {
			snprintf(err, errlen, "--net: '%s' is not tap=NAME, mac=MAC, id=ID, mtu=N "
				 "(68-65535), rx-bw/tx-bw=BYTES_PER_SECOND or rx-ops/tx-ops=N",
				 a.item);
			break;
		}
	}
	if (!ret && !cfg->tap[0]) {
		snprintf(err, errlen, "--net '%s' has no tap=NAME", arg);
		ret = -EINVAL;
	}
	devargs_close(&it);
	return ret;
}
