/* Firecracker's request bodies, checked field by field with jansson.
 *
 * A field not in the schema, a value of the wrong type, a missing required
 * field and a value out of range each fail with a message that names the
 * resource and the field ("machine-config: vcpu_count must be between 1
 * and 32, got 33"). JSON null counts as absent for optional fields, as in
 * Firecracker. Fields of the schema mote cannot honour are refused with a
 * message rather than accepted and ignored. */
#include "api/schema.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define IFNAME_MAX 15            /* IFNAMSIZ - 1 */
#define UDS_PATH_MAX 107         /* sizeof(sun_path) - 1 */

int schema_fail(const struct jctx *c, const char *fmt, ...)
{
	char msg[SCHEMA_ERR_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errlen, "%s: %s", c->res, msg);
	return -1;
}

const char *schema_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a real number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "a value";
}

/* Every key of obj must be in allowed (NULL-terminated). */
int schema_check_fields(const struct jctx *c, const json_t *obj, const char *const allowed[])
{
	const char *key;
	json_t *val;

	json_object_foreach((json_t *)obj, key, val) {
		bool known = false;

		for (size_t i = 0; allowed[i] && !known; i++)
			known = strcmp(key, allowed[i]) == 0;
		if (!known)
			return schema_fail(c, "unknown field '%s%s'", c->prefix, key);
	}
	return 0;
}

/* Returns the value, NULL when absent (or null), or sets *bad on a missing
 * required field. */
static json_t *field(const struct jctx *c, const json_t *obj, const char *key, bool required,
		     int *bad)
{
	json_t *v = json_object_get(obj, key);

	if (v && json_is_null(v) && !required)
		v = NULL;
	if (!v && required)
		*bad = schema_fail(c, "missing required field '%s%s'", c->prefix, key);
	return v;
}

/* 1 present, 0 absent, -1 error. */
static int get_string(const struct jctx *c, const json_t *obj, const char *key, bool required,
		      char *out, size_t outlen)
{
	int bad = 0;
	json_t *v = field(c, obj, key, required, &bad);

	if (!v)
		return bad;
	if (!json_is_string(v))
		return schema_fail(c, "%s%s must be a string, got %s", c->prefix, key, schema_kind(v));
	size_t len = json_string_length(v);
	if (len >= outlen)
		return schema_fail(c, "%s%s is %zu bytes long, at most %zu are allowed", c->prefix, key, len,
			     outlen - 1);
	if (strlen(json_string_value(v)) != len)
		return schema_fail(c, "%s%s contains a NUL character", c->prefix, key);
	memcpy(out, json_string_value(v), len + 1);
	return 1;
}

static int get_bool(const struct jctx *c, const json_t *obj, const char *key, bool required,
		    bool *out)
{
	int bad = 0;
	json_t *v = field(c, obj, key, required, &bad);

	if (!v)
		return bad;
	if (!json_is_boolean(v))
		return schema_fail(c, "%s%s must be a boolean, got %s", c->prefix, key, schema_kind(v));
	*out = json_is_true(v);
	return 1;
}

static int get_uint(const struct jctx *c, const json_t *obj, const char *key, bool required,
		    uint64_t min, uint64_t max, uint64_t *out)
{
	int bad = 0;
	json_t *v = field(c, obj, key, required, &bad);

	if (!v)
		return bad;
	if (!json_is_integer(v))
		return schema_fail(c, "%s%s must be an integer, got %s", c->prefix, key, schema_kind(v));
	json_int_t n = json_integer_value(v);
	if (n < 0 || (uint64_t)n < min || (uint64_t)n > max)
		return schema_fail(c, "%s%s must be between %llu and %llu, got %lld", c->prefix, key,
			     (unsigned long long)min, (unsigned long long)max, (long long)n);
	*out = (uint64_t)n;
	return 1;
}

/* A string out of names[]; *out is its index. Case-insensitive if asked. */
static int get_enum(const struct jctx *c, const json_t *obj, const char *key, bool required,
		    const char *const names[], bool nocase, int *out)
{
	char val[32], list[160] = "";
	int r = get_string(c, obj, key, required, val, sizeof(val));

	if (r == -1 && json_is_string(json_object_get(obj, key)))
		val[0] = '\0'; /* too long: falls through to "must be one of" */
	else if (r <= 0)
		return r;
	for (int i = 0; names[i]; i++) {
		if (nocase ? !strcasecmp(val, names[i]) : !strcmp(val, names[i])) {
			*out = i;
			return 1;
		}
		size_t used = strlen(list);
		snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", names[i]);
	}
	return schema_fail(c, "%s%s must be one of %s, got '%s'", c->prefix, key, list,
		     json_string_value(json_object_get(obj, key)));
}

/* A nested object (NULL when absent or null). */
int schema_get_object(const struct jctx *c, const json_t *obj, const char *key, bool required,
		      json_t **out)
{
	int bad = 0;
	json_t *v = field(c, obj, key, required, &bad);

	*out = NULL;
	if (!v)
		return bad;
	if (!json_is_object(v))
		return schema_fail(c, "%s%s must be an object, got %s", c->prefix, key, schema_kind(v));
	*out = v;
	return 1;
}

/* Resource ids: Firecracker allows letters, digits and underscores. */
int schema_check_id(const struct jctx *c, const char *what, const char *id, size_t max)
{
	size_t len = strlen(id);

	if (len == 0 || len > max)
		return schema_fail(c, "%s must be 1 to %zu characters, got %zu", what, max, len);
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)id[i]) && id[i] != '_')
			return schema_fail(c, "%s '%s' may contain only letters, digits and '_'", what, id);
	return 0;
}

int schema_reject_present(const struct jctx *c, const json_t *obj, const char *key,
			  const char *why)
{
	json_t *v = json_object_get(obj, key);

	if (v && !json_is_null(v))
		return schema_fail(c, "%s%s is not supported: %s", c->prefix, key, why);
	return 0;
}

/* ---- shared shapes ---------------------------------------------------------- */

static int parse_token_bucket(const struct jctx *parent, const json_t *rl, const char *key,
			      struct token_bucket_config *out)
{
	static const char *const fields[] = { "size", "one_time_burst", "refill_time", NULL };
	char prefix[96];
	json_t *tb;
	uint64_t v;

	int r = schema_get_object(parent, rl, key, false, &tb);
	if (r <= 0)
		return r;
	snprintf(prefix, sizeof(prefix), "%s%s.", parent->prefix, key);
	struct jctx c = { parent->res, prefix, parent->err, parent->errlen };
	if (schema_check_fields(&c, tb, fields))
		return -1;
	memset(out, 0, sizeof(*out));
	if (get_uint(&c, tb, "size", true, 0, INT64_MAX, &out->size) < 0 ||
	    get_uint(&c, tb, "refill_time", true, 0, INT64_MAX, &out->refill_time_ms) < 0)
		return -1;
	r = get_uint(&c, tb, "one_time_burst", false, 0, INT64_MAX, &v);
	if (r < 0)
		return -1;
	if (r)
		out->one_time_burst = v;
	if (out->size && !out->refill_time_ms)
		return schema_fail(&c, "%srefill_time must be above 0 when size is set", prefix);
	return 1;
}

static int parse_rate_limiter(const struct jctx *parent, const json_t *obj, const char *key,
			      struct token_bucket_config *bw, struct token_bucket_config *ops)
{
	static const char *const fields[] = { "bandwidth", "ops", NULL };
	char prefix[64];
	json_t *rl;
	struct token_bucket_config dummy_bw, dummy_ops;

	int r = schema_get_object(parent, obj, key, false, &rl);
	if (r <= 0)
		return r;
	snprintf(prefix, sizeof(prefix), "%s%s.", parent->prefix, key);
	struct jctx c = { parent->res, prefix, parent->err, parent->errlen };
	if (schema_check_fields(&c, rl, fields))
		return -1;
	if (parse_token_bucket(&c, rl, "bandwidth", bw ? bw : &dummy_bw) < 0 ||
	    parse_token_bucket(&c, rl, "ops", ops ? ops : &dummy_ops) < 0)
		return -1;
	return 1;
}

/* ---- resources -------------------------------------------------------------- */

int schema_boot_source(const struct jctx *c, const json_t *o, struct api_boot_source *b)
{
	static const char *const fields[] = { "kernel_image_path", "initrd_path", "boot_args",
					      NULL };

	memset(b, 0, sizeof(*b));
	if (schema_check_fields(c, o, fields) ||
	    get_string(c, o, "kernel_image_path", true, b->kernel_path, sizeof(b->kernel_path)) < 0 ||
	    get_string(c, o, "initrd_path", false, b->initrd_path, sizeof(b->initrd_path)) < 0 ||
	    get_string(c, o, "boot_args", false, b->boot_args, sizeof(b->boot_args)) < 0)
		return -1;
	if (!b->kernel_path[0])
		return schema_fail(c, "kernel_image_path must not be empty");
	return 0;
}

int schema_machine_config(const struct jctx *c, const json_t *o, bool patch,
				struct api_machine_config *m)
{
	static const char *const fields[] = { "vcpu_count", "mem_size_mib", "smt",
					      "track_dirty_pages", "cpu_template", "huge_pages",
					      NULL };
	/* "Minimal" is mote's: it hides what a software nested hypervisor
	 * cannot run (see --cpu-template). Firecracker's named templates model
	 * EC2 instance types mote does not imitate. */
	static const char *const templates[] = { "None", "Minimal", "C3", "T2", "T2S", "T2CL",
						 "T2A", "V1N1", NULL };
	static const char *const huge[] = { "None", "Transparent", "2M", NULL };
	uint64_t v;
	bool b;
	int r, idx;

	memset(m, 0, sizeof(*m));
	if (schema_check_fields(c, o, fields))
		return -1;
	r = get_uint(c, o, "vcpu_count", !patch, 1, API_MAX_VCPUS, &v);
	if (r < 0)
		return -1;
	m->has_vcpu_count = r;
	m->vcpu_count = (unsigned)v;
	r = get_uint(c, o, "mem_size_mib", !patch, API_MIN_MEM_MIB, API_MAX_MEM_MIB,
		     &m->mem_size_mib);
	if (r < 0)
		return -1;
	m->has_mem_size = r;
	r = get_bool(c, o, "smt", false, &b);
	if (r < 0)
		return -1;
	if (r && b)
		return schema_fail(c, "smt=true is not supported: each mote vCPU is a core of its own");
	r = get_bool(c, o, "track_dirty_pages", false, &b);
	if (r < 0)
		return -1;
	/* PUT resets it to false; PATCH leaves it. */
	m->has_track_dirty_pages = r || !patch;
	m->track_dirty_pages = r && b;
	r = get_enum(c, o, "huge_pages", false, huge, false, &idx);
	if (r < 0)
		return -1;
	if (r && idx != 0)
		return schema_fail(c, "huge_pages '%s' is not supported yet; only None", huge[idx]);
	r = get_enum(c, o, "cpu_template", false, templates, false, &idx);
	if (r < 0)
		return -1;
	if (r && idx > 1)
		return schema_fail(c, "cpu_template '%s' is not supported; mote offers None and Minimal",
			     templates[idx]);
	/* PUT resets an absent template to None; PATCH leaves it. */
	m->has_cpu_template = r || !patch;
	m->cpu_template = r && idx == 1 ? CPU_TEMPLATE_MINIMAL : CPU_TEMPLATE_HOST;
	return 0;
}

int schema_drive(const struct jctx *c, const json_t *o, bool patch, struct api_drive *d)
{
	static const char *const put_fields[] = { "drive_id", "path_on_host", "is_root_device",
						  "is_read_only", "partuuid", "cache_type",
						  "rate_limiter", "io_engine", "socket", NULL };
	static const char *const patch_fields[] = { "drive_id", "path_on_host", "rate_limiter",
						    NULL };
	static const char *const cache_types[] = { "Unsafe", "Writeback", NULL };
	/* Both map onto mote's io_uring backend: the guest sees the same
	 * device and the same data either way. */
	static const char *const engines[] = { "Sync", "Async", NULL };
	int r, idx;

	memset(d, 0, sizeof(*d));
	if (schema_check_fields(c, o, patch ? patch_fields : put_fields) ||
	    get_string(c, o, "drive_id", true, d->blk.id, sizeof(d->blk.id)) < 0 ||
	    schema_check_id(c, "drive_id", d->blk.id, BLK_ID_LEN))
		return -1;
	r = get_string(c, o, "path_on_host", !patch, d->blk.path, sizeof(d->blk.path));
	if (r < 0)
		return -1;
	d->has_path = r;
	if (r && !d->blk.path[0])
		return schema_fail(c, "path_on_host must not be empty");
	r = parse_rate_limiter(c, o, "rate_limiter", &d->blk.bandwidth, &d->blk.ops);
	if (r < 0)
		return -1;
	d->has_rate_limiter = r;
	if (patch)
		return 0;
	if (get_bool(c, o, "is_root_device", true, &d->blk.is_root) < 0 ||
	    get_bool(c, o, "is_read_only", false, &d->blk.read_only) < 0 ||
	    schema_reject_present(c, o, "partuuid", "mote passes root=/dev/vdX for the root device") ||
	    schema_reject_present(c, o, "socket", "vhost-user-block is not part of mote"))
		return -1;
	r = get_enum(c, o, "cache_type", false, cache_types, false, &idx);
	if (r < 0)
		return -1;
	d->cache_type = r ? (enum api_cache_type)idx : API_CACHE_UNSAFE;
	if (get_enum(c, o, "io_engine", false, engines, false, &idx) < 0)
		return -1;
	return 0;
}

int schema_net(const struct jctx *c, const json_t *o, bool patch, struct api_net *n)
{
	static const char *const put_fields[] = { "iface_id", "host_dev_name", "guest_mac", "mtu",
						  "rx_rate_limiter", "tx_rate_limiter", NULL };
	static const char *const patch_fields[] = { "iface_id", "rx_rate_limiter",
						    "tx_rate_limiter", NULL };
	char name[IFNAME_MAX + 1], mac[32];
	uint64_t mtu;
	int r;

	memset(n, 0, sizeof(*n));
	if (schema_check_fields(c, o, patch ? patch_fields : put_fields) ||
	    get_string(c, o, "iface_id", true, n->net.id, sizeof(n->net.id)) < 0 ||
	    schema_check_id(c, "iface_id", n->net.id, SCHEMA_IFACE_ID_MAX))
		return -1;
	r = parse_rate_limiter(c, o, "rx_rate_limiter", &n->net.rx_bw, &n->net.rx_ops);
	if (r < 0)
		return -1;
	n->has_rx_rate_limiter = r;
	r = parse_rate_limiter(c, o, "tx_rate_limiter", &n->net.tx_bw, &n->net.tx_ops);
	if (r < 0)
		return -1;
	n->has_tx_rate_limiter = r;
	if (patch)
		return 0;
	if (get_string(c, o, "host_dev_name", true, name, sizeof(name)) < 0)
		return -1;
	r = get_uint(c, o, "mtu", false, 68, 65535, &mtu);
	if (r < 0)
		return -1;
	n->net.mtu = r ? (uint16_t)mtu : 0;
	if (!name[0])
		return schema_fail(c, "host_dev_name must not be empty");
	snprintf(n->net.tap, sizeof(n->net.tap), "%s", name);
	r = get_string(c, o, "guest_mac", false, mac, sizeof(mac));
	if (r < 0)
		return -1;
	if (r && net_parse_mac(mac, n->net.mac))
		return schema_fail(c, "guest_mac '%s' is not a unicast MAC address like "
			     "06:00:ac:10:00:02", mac);
	n->net.has_mac = r;
	return 0;
}

int schema_vsock(const struct jctx *c, const json_t *o, struct api_vsock *v)
{
	static const char *const fields[] = { "guest_cid", "uds_path", "vsock_id", NULL };
	char path[UDS_PATH_MAX + 1];
	uint64_t cid;

	memset(v, 0, sizeof(*v));
	if (schema_check_fields(c, o, fields) ||
	    get_uint(c, o, "guest_cid", true, VSOCK_MIN_GUEST_CID, VSOCK_MAX_GUEST_CID, &cid) < 0 ||
	    get_string(c, o, "uds_path", true, path, sizeof(path)) < 0 ||
	    get_string(c, o, "vsock_id", false, v->id, sizeof(v->id)) < 0)
		return -1;
	if (!path[0])
		return schema_fail(c, "uds_path must not be empty");
	/* Guest connections to host port P go to "<uds_path>_P": room for
	 * that too in a sockaddr_un. */
	if (strlen(path) + 11 >= sizeof(v->cfg.uds_path))
		return schema_fail(c, "uds_path is longer than %zu bytes (it must leave room for "
				   "'_<port>' in a unix socket path)", sizeof(v->cfg.uds_path) - 12);
	v->cfg.guest_cid = cid;
	memcpy(v->cfg.uds_path, path, strlen(path) + 1);
	return 0;
}

int schema_logger(const struct jctx *c, const json_t *o, struct api_logger *l)
{
	static const char *const fields[] = { "level", "log_path", "show_level", "show_log_origin",
					      "module", NULL };
	/* Firecracker's names; Trace is mote's debug, Off silences the log. */
	static const char *const levels[] = { "Error", "Warning", "Info", "Debug", "Trace", "Off",
					      NULL };
	static const enum log_level map[] = { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_DEBUG,
					      LOG_ERROR };
	int r, idx;

	memset(l, 0, sizeof(*l));
	if (schema_check_fields(c, o, fields) ||
	    schema_reject_present(c, o, "module", "mote's log has no per-module filter"))
		return -1;
	r = get_enum(c, o, "level", false, levels, true, &idx);
	if (r < 0)
		return -1;
	l->has_level = r;
	if (r) {
		l->level = map[idx];
		l->off = idx == 5;
	}
	if (get_string(c, o, "log_path", false, l->log_path, sizeof(l->log_path)) < 0 ||
	    get_bool(c, o, "show_level", false, &l->show_level) < 0 ||
	    get_bool(c, o, "show_log_origin", false, &l->show_log_origin) < 0)
		return -1;
	return 0;
}

int schema_metrics(const struct jctx *c, const json_t *o, char *path)
{
	static const char *const fields[] = { "metrics_path", NULL };

	if (schema_check_fields(c, o, fields) ||
	    get_string(c, o, "metrics_path", true, path, API_PATH_MAX) < 0)
		return -1;
	if (!path[0])
		return schema_fail(c, "metrics_path must not be empty");
	return 0;
}

int schema_action(const struct jctx *c, const json_t *o, enum api_op *op)
{
	static const char *const fields[] = { "action_type", NULL };
	static const char *const actions[] = { "InstanceStart", "SendCtrlAltDel", "FlushMetrics",
					       NULL };
	static const enum api_op map[] = { API_INSTANCE_START, API_SEND_CTRL_ALT_DEL,
					   API_FLUSH_METRICS };
	int idx;

	if (schema_check_fields(c, o, fields) ||
	    get_enum(c, o, "action_type", true, actions, false, &idx) < 0)
		return -1;
	*op = map[idx];
	return 0;
}

int schema_vm_state(const struct jctx *c, const json_t *o, enum api_op *op)
{
	static const char *const fields[] = { "state", NULL };
	static const char *const states[] = { "Paused", "Resumed", NULL };
	int idx;

	if (schema_check_fields(c, o, fields) || get_enum(c, o, "state", true, states, false, &idx) < 0)
		return -1;
	*op = idx == 0 ? API_PAUSE : API_RESUME;
	return 0;
}

json_t *schema_parse_body(const struct jctx *c, const char *body, size_t len)
{
	json_error_t jerr;

	if (!body || len == 0) {
		schema_fail(c, "missing JSON body");
		return NULL;
	}
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		schema_fail(c, "malformed JSON body: %s (line %d, column %d)", jerr.text, jerr.line,
		      jerr.column);
		return NULL;
	}
	if (!json_is_object(root)) {
		schema_fail(c, "the body must be a JSON object, got %s", schema_kind(root));
		json_decref(root);
		return NULL;
	}
	return root;
}
