/* The bodies of PUT /snapshot/create and PUT /snapshot/load, as in
 * Firecracker's API. What mote does not do yet (the Uffd backend, network
 * and vsock overrides) is refused with a message, never ignored. */
#include <stdio.h>
#include <string.h>

#include "api/schema.h"

/* 1 present (copied), 0 absent or null, -1 error. */
static int snap_string(const struct jctx *c, const json_t *o, const char *key, bool required,
		       char *out, size_t cap)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v)) {
		if (required)
			return schema_fail(c, "missing required field '%s%s'", c->prefix, key);
		return 0;
	}
	if (!json_is_string(v))
		return schema_fail(c, "%s%s must be a string, got %s", c->prefix, key,
				   schema_kind(v));
	size_t len = json_string_length(v);
	const char *s = json_string_value(v);
	if (len == 0)
		return schema_fail(c, "%s%s must not be empty", c->prefix, key);
	if (len >= cap)
		return schema_fail(c, "%s%s is longer than %zu bytes", c->prefix, key, cap - 1);
	if (strlen(s) != len)
		return schema_fail(c, "%s%s contains a NUL byte", c->prefix, key);
	memcpy(out, s, len + 1);
	return 1;
}

static int snap_bool(const struct jctx *c, const json_t *o, const char *key, bool *out)
{
	json_t *v = json_object_get(o, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return schema_fail(c, "%s%s must be a boolean, got %s", c->prefix, key,
				   schema_kind(v));
	*out = json_is_true(v);
	return 1;
}

int schema_snapshot_create(const struct jctx *c, const json_t *o, struct api_snapshot_create *s)
{
	static const char *const fields[] = { "snapshot_type", "snapshot_path", "mem_file_path",
					      NULL };
	char type[16] = "Full";

	memset(s, 0, sizeof(*s));
	if (schema_check_fields(c, o, fields) ||
	    snap_string(c, o, "snapshot_path", true, s->snapshot_path, sizeof(s->snapshot_path)) < 0 ||
	    snap_string(c, o, "mem_file_path", true, s->mem_file_path, sizeof(s->mem_file_path)) < 0 ||
	    snap_string(c, o, "snapshot_type", false, type, sizeof(type)) < 0)
		return -1;
	if (!strcmp(type, "Diff"))
		s->diff = true;
	else if (strcmp(type, "Full"))
		return schema_fail(c, "snapshot_type must be Full or Diff, got '%s'", type);
	if (!strcmp(s->snapshot_path, s->mem_file_path))
		return schema_fail(c, "snapshot_path and mem_file_path must be different files");
	return 0;
}

int schema_snapshot_load(const struct jctx *c, const json_t *o, struct api_snapshot_load *s)
{
	static const char *const fields[] = {
		"snapshot_path", "mem_file_path", "mem_backend", "track_dirty_pages",
		"enable_diff_snapshots", "resume_vm", "network_overrides", "vsock_override",
		"clock_realtime", NULL,
	};
	static const char *const backend_fields[] = { "backend_type", "backend_path", NULL };
	bool diff = false;
	json_t *backend = NULL;
	int legacy, ret;

	memset(s, 0, sizeof(*s));
	if (schema_check_fields(c, o, fields) ||
	    snap_string(c, o, "snapshot_path", true, s->snapshot_path, sizeof(s->snapshot_path)) < 0)
		return -1;
	legacy = snap_string(c, o, "mem_file_path", false, s->mem_path, sizeof(s->mem_path));
	if (legacy < 0 || schema_get_object(c, o, "mem_backend", false, &backend) < 0)
		return -1;
	if (legacy && backend)
		return schema_fail(c, "give either mem_backend or the deprecated mem_file_path, not "
				   "both");
	if (!legacy && !backend)
		return schema_fail(c, "missing required field 'mem_backend'");
	if (backend) {
		struct jctx bc = { c->res, "mem_backend.", c->err, c->errlen };
		char type[16];

		if (schema_check_fields(&bc, backend, backend_fields) ||
		    snap_string(&bc, backend, "backend_type", true, type, sizeof(type)) < 0 ||
		    snap_string(&bc, backend, "backend_path", true, s->mem_path,
				sizeof(s->mem_path)) < 0)
			return -1;
		s->uffd = !strcmp(type, "Uffd");
		if (!s->uffd && strcmp(type, "File"))
			return schema_fail(c, "mem_backend.backend_type must be File or Uffd, got '%s'",
					   type);
	}
	if ((ret = snap_bool(c, o, "track_dirty_pages", &s->track_dirty_pages)) < 0 ||
	    (ret = snap_bool(c, o, "enable_diff_snapshots", &diff)) < 0 ||
	    (ret = snap_bool(c, o, "resume_vm", &s->resume_vm)) < 0 ||
	    (ret = snap_bool(c, o, "clock_realtime", &s->clock_realtime)) < 0)
		return -1;
	s->track_dirty_pages = s->track_dirty_pages || diff;
	json_t *nets = json_object_get(o, "network_overrides");
	if (nets && !json_is_null(nets)) {
		static const char *const nfields[] = { "iface_id", "host_dev_name", NULL };
		size_t i;
		json_t *item;

		if (!json_is_array(nets))
			return schema_fail(c, "network_overrides must be an array, got %s",
					   schema_kind(nets));
		if (json_array_size(nets) > NET_MAX_IFACES)
			return schema_fail(c, "network_overrides: at most %d entries", NET_MAX_IFACES);
		json_array_foreach(nets, i, item) {
			struct api_net_override *no = &s->net_overrides[i];
			struct jctx nc = { c->res, "network_overrides[].", c->err, c->errlen };

			if (!json_is_object(item))
				return schema_fail(c, "network_overrides[%zu] must be an object, got %s",
						   i, schema_kind(item));
			if (schema_check_fields(&nc, item, nfields) ||
			    snap_string(&nc, item, "iface_id", true, no->iface_id,
					sizeof(no->iface_id)) < 0 ||
			    snap_string(&nc, item, "host_dev_name", true, no->host_dev_name,
					sizeof(no->host_dev_name)) < 0)
				return -1;
			s->nr_net_overrides++;
		}
	}
	json_t *vsock = NULL;
	if (schema_get_object(c, o, "vsock_override", false, &vsock) < 0)
		return -1;
	if (vsock) {
		static const char *const vfields[] = { "uds_path", "guest_cid", NULL };
		struct jctx vc = { c->res, "vsock_override.", c->err, c->errlen };
		json_t *cid = json_object_get(vsock, "guest_cid");

		/* <uds_path>_<port> must still fit a unix socket address. */
		if (schema_check_fields(&vc, vsock, vfields) ||
		    snap_string(&vc, vsock, "uds_path", true, s->vsock_uds_path, 97) < 0)
			return -1;
		if (cid && !json_is_null(cid)) {
			if (!json_is_integer(cid) || json_integer_value(cid) < 3 ||
			    json_integer_value(cid) > 0xfffffffeLL)
				return schema_fail(c, "vsock_override.guest_cid must be an integer "
						   "between 3 and 4294967294");
			s->vsock_cid = (uint64_t)json_integer_value(cid);
		}
	}
	return 0;
}
