/* Method + path -> typed request (api/schema.c checks the bodies), the
 * 400 answers, and --config-file documents. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api/api.h"
#include "api/schema.h"

#ifndef MOTE_VERSION
#define MOTE_VERSION "0.1.0"
#endif

#define ERR_LEN SCHEMA_ERR_LEN
#define IFACE_ID_MAX SCHEMA_IFACE_ID_MAX

/* ---- responses -------------------------------------------------------------- */

void api_response_body(struct api_response *resp, int status, char *body)
{
	resp->status = status;
	resp->body = body;
}

void api_response_error(struct api_response *resp, const char *fmt, ...)
{
	char msg[ERR_LEN];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_t *o = json_pack("{s:s}", "fault_message", msg);
	/* A message cut inside a UTF-8 sequence is not valid JSON text. */
	if (!o)
		o = json_pack("{s:s}", "fault_message", "invalid request (unprintable message)");
	resp->status = 400;
	resp->body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
}

void api_response_free(struct api_response *resp)
{
	free(resp->body);
	resp->body = NULL;
}

/* ---- routing ---------------------------------------------------------------- */

enum route {
	R_ROOT, R_VERSION, R_BOOT, R_MACHINE, R_DRIVE, R_NET, R_VSOCK, R_ACTIONS, R_VM,
	R_VM_CONFIG, R_LOGGER, R_METRICS, R_SNAP_CREATE, R_SNAP_LOAD, R_DEMAND, R_NONE,
};

static enum route route_of(const char *path, const char **id)
{
	static const struct { const char *path; enum route r; } exact[] = {
		{ "/", R_ROOT }, { "/version", R_VERSION }, { "/boot-source", R_BOOT },
		{ "/machine-config", R_MACHINE }, { "/vsock", R_VSOCK }, { "/actions", R_ACTIONS },
		{ "/vm", R_VM }, { "/vm/config", R_VM_CONFIG }, { "/logger", R_LOGGER },
		{ "/metrics", R_METRICS }, { "/snapshot/create", R_SNAP_CREATE },
		{ "/snapshot/load", R_SNAP_LOAD }, { "/demand", R_DEMAND },
	};
	static const struct { const char *prefix; enum route r; } with_id[] = {
		{ "/drives/", R_DRIVE }, { "/network-interfaces/", R_NET },
	};

	for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
		if (!strcmp(path, exact[i].path))
			return exact[i].r;
	for (size_t i = 0; i < sizeof(with_id) / sizeof(with_id[0]); i++) {
		size_t n = strlen(with_id[i].prefix);
		if (!strncmp(path, with_id[i].prefix, n) && path[n] && !strchr(path + n, '/')) {
			*id = path + n;
			return with_id[i].r;
		}
	}
	return R_NONE;
}

static bool method_is(const char *method, const char *want)
{
	return !strcmp(method, want);
}

static int route_error(struct api_response *resp, const char *err)
{
	api_response_error(resp, "%s", err);
	return 1;
}

/* The id in the path must be a valid id and the body's. */
static int check_path_id(const struct jctx *c, const char *path_id, const char *body_id,
			 const char *field_name, size_t max, struct api_request *req)
{
	if (schema_check_id(c, "the id in the path", path_id, max))
		return -1;
	if (strcmp(path_id, body_id))
		return schema_fail(c, "%s '%s' in the body does not match '%s' in the path", field_name,
			     body_id, path_id);
	snprintf(req->path_id, sizeof(req->path_id), "%s", path_id);
	return 0;
}

int api_route(const char *method, const char *path, const char *body, size_t body_len,
	      struct api_request *req, struct api_response *resp)
{
	char err[ERR_LEN];
	const char *id = NULL;
	enum route r = route_of(path, &id);
	bool get = method_is(method, "GET"), put = method_is(method, "PUT"),
	     patch = method_is(method, "PATCH");
	static const char *const res_names[] = {
		[R_ROOT] = "/", [R_VERSION] = "version", [R_BOOT] = "boot-source",
		[R_MACHINE] = "machine-config", [R_DRIVE] = "drives",
		[R_NET] = "network-interfaces", [R_VSOCK] = "vsock", [R_ACTIONS] = "actions",
		[R_VM] = "vm", [R_VM_CONFIG] = "vm/config", [R_LOGGER] = "logger",
		[R_METRICS] = "metrics", [R_SNAP_CREATE] = "snapshot/create",
		[R_SNAP_LOAD] = "snapshot/load", [R_DEMAND] = "demand", [R_NONE] = "",
	};
	struct jctx c = { res_names[r], "", err, sizeof(err) };
	bool allowed;

	memset(req, 0, sizeof(*req));
	switch (r) {
	case R_ROOT: case R_VERSION: case R_VM_CONFIG: case R_DEMAND: allowed = get; break;
	case R_MACHINE: allowed = get || put || patch; break;
	case R_DRIVE: case R_NET: allowed = put || patch; break;
	case R_VM: allowed = patch; break;
	case R_BOOT: case R_VSOCK: case R_ACTIONS: case R_LOGGER: case R_METRICS:
	case R_SNAP_CREATE: case R_SNAP_LOAD:
		allowed = put;
		break;
	default: allowed = false; break;
	}
	if (!allowed) {
		api_response_error(resp, "Invalid request method and/or path: %s %s", method, path);
		return 1;
	}
	if (get) {
		if (body_len) {
			api_response_error(resp, "GET request cannot have a body");
			return 1;
		}
		switch (r) {
		case R_VERSION: {
			json_t *o = json_pack("{s:s}", "firecracker_version", MOTE_VERSION);
			api_response_body(resp, 200, json_dumps(o, JSON_COMPACT));
			json_decref(o);
			return 1;
		}
		case R_ROOT: req->op = API_GET_INSTANCE_INFO; return 0;
		case R_MACHINE: req->op = API_GET_MACHINE_CONFIG; return 0;
		case R_DEMAND: req->op = API_GET_DEMAND; return 0;
		default: req->op = API_GET_VM_CONFIG; return 0;
		}
	}

	json_t *o = schema_parse_body(&c, body, body_len);
	if (!o)
		return route_error(resp, err);
	int ret = 0;
	switch (r) {
	case R_BOOT:
		req->op = API_PUT_BOOT_SOURCE;
		ret = schema_boot_source(&c, o, &req->boot);
		break;
	case R_MACHINE:
		req->op = put ? API_PUT_MACHINE_CONFIG : API_PATCH_MACHINE_CONFIG;
		ret = schema_machine_config(&c, o, patch, &req->machine);
		break;
	case R_DRIVE:
		req->op = put ? API_PUT_DRIVE : API_PATCH_DRIVE;
		ret = schema_drive(&c, o, patch, &req->drive);
		if (!ret)
			ret = check_path_id(&c, id, req->drive.blk.id, "drive_id", BLK_ID_LEN, req);
		break;
	case R_NET:
		req->op = put ? API_PUT_NET : API_PATCH_NET;
		ret = schema_net(&c, o, patch, &req->net);
		if (!ret && schema_check_id(&c, "the id in the path", id, IFACE_ID_MAX))
			ret = -1;
		else if (!ret && strcmp(id, req->net.net.id))
			ret = schema_fail(&c, "iface_id '%s' in the body does not match '%s' in the path",
				    req->net.net.id, id);
		break;
	case R_VSOCK:
		req->op = API_PUT_VSOCK;
		ret = schema_vsock(&c, o, &req->vsock);
		break;
	case R_ACTIONS:
		ret = schema_action(&c, o, &req->op);
		break;
	case R_VM:
		ret = schema_vm_state(&c, o, &req->op);
		break;
	case R_LOGGER:
		req->op = API_PUT_LOGGER;
		ret = schema_logger(&c, o, &req->logger);
		break;
	case R_METRICS:
		req->op = API_PUT_METRICS;
		ret = schema_metrics(&c, o, req->metrics_path);
		break;
	case R_SNAP_CREATE:
		req->op = API_SNAPSHOT_CREATE;
		ret = schema_snapshot_create(&c, o, &req->snap_create);
		break;
	case R_SNAP_LOAD:
		req->op = API_SNAPSHOT_LOAD;
		ret = schema_snapshot_load(&c, o, &req->snap_load);
		break;
	default:
		ret = schema_fail(&c, "internal error: unrouted path");
		break;
	}
	json_decref(o);
	return ret ? route_error(resp, err) : 0;
}

/* ---- --config-file ---------------------------------------------------------- */

static int config_push(struct api_request **reqs, size_t *nr, const struct api_request *r)
{
	struct api_request *n = realloc(*reqs, (*nr + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	n[*nr] = *r;
	*reqs = n;
	(*nr)++;
	return 0;
}

/* A section that must be an object (or null when optional). */
static int config_object(char *err, size_t errlen, const json_t *root, const char *key,
			 json_t **out)
{
	struct jctx c = { "config-file", "", err, errlen };

	return schema_get_object(&c, root, key, false, out);
}

int api_parse_vm_config(const char *json, size_t len, struct api_request **reqs, size_t *nr,
			char *err, size_t errlen)
{
	static const char *const sections[] = {
		"boot-source", "machine-config", "drives", "network-interfaces", "vsock", "logger",
		"metrics", "balloon", "cpu-config", "mmds-config", "entropy", "memory-hotplug",
		"pmem", "serial", NULL,
	};
	/* Parts of GET /vm/config mote has no device for: null (or an empty
	 * list) is what mote itself writes there. */
	static const char *const null_only[] = { "balloon", "cpu-config", "mmds-config", "entropy",
						 "memory-hotplug", "serial", NULL };
	struct jctx top = { "config-file", "", err, errlen };
	struct api_request r;
	json_t *root, *o;
	int ret = -1;

	*reqs = NULL;
	*nr = 0;
	root = schema_parse_body(&top, json, len);
	if (!root)
		return -1;
	if (schema_check_fields(&top, root, sections))
		goto out;
	for (size_t i = 0; null_only[i]; i++)
		if (schema_reject_present(&top, root, null_only[i], "mote has no such device"))
			goto out;

	if (config_object(err, errlen, root, "logger", &o) < 0)
		goto out;
	if (o) {
		struct jctx c = { "logger", "", err, errlen };
		memset(&r, 0, sizeof(r));
		r.op = API_PUT_LOGGER;
		if (schema_logger(&c, o, &r.logger) || config_push(reqs, nr, &r))
			goto out;
	}
	if (config_object(err, errlen, root, "metrics", &o) < 0)
		goto out;
	if (o) {
		struct jctx c = { "metrics", "", err, errlen };
		memset(&r, 0, sizeof(r));
		r.op = API_PUT_METRICS;
		if (schema_metrics(&c, o, r.metrics_path) || config_push(reqs, nr, &r))
			goto out;
	}
	if (config_object(err, errlen, root, "machine-config", &o) < 0)
		goto out;
	if (o) {
		struct jctx c = { "machine-config", "", err, errlen };
		memset(&r, 0, sizeof(r));
		r.op = API_PUT_MACHINE_CONFIG;
		if (schema_machine_config(&c, o, false, &r.machine) || config_push(reqs, nr, &r))
			goto out;
	}
	if (config_object(err, errlen, root, "boot-source", &o) < 0)
		goto out;
	if (!o) {
		schema_fail(&top, "missing required field 'boot-source'");
		goto out;
	}
	{
		struct jctx c = { "boot-source", "", err, errlen };
		memset(&r, 0, sizeof(r));
		r.op = API_PUT_BOOT_SOURCE;
		if (schema_boot_source(&c, o, &r.boot) || config_push(reqs, nr, &r))
			goto out;
	}

	static const char *const lists[] = { "drives", "network-interfaces", "pmem" };
	for (size_t l = 0; l < sizeof(lists) / sizeof(lists[0]); l++) {
		json_t *arr = json_object_get(root, lists[l]);
		size_t i;
		json_t *item;

		if (!arr || json_is_null(arr))
			continue;
		if (!json_is_array(arr)) {
			schema_fail(&top, "%s must be an array, got %s", lists[l], schema_kind(arr));
			goto out;
		}
		json_array_foreach(arr, i, item) {
			char res[48];
			snprintf(res, sizeof(res), "%s[%zu]", lists[l], i);
			struct jctx c = { res, "", err, errlen };
			if (!json_is_object(item)) {
				schema_fail(&c, "must be an object, got %s", schema_kind(item));
				goto out;
			}
			if (l == 2) {
				schema_fail(&c, "virtio-pmem is not supported by mote");
				goto out;
			}
			if (l == 1) {
				memset(&r, 0, sizeof(r));
				r.op = API_PUT_NET;
				if (schema_net(&c, item, false, &r.net) || config_push(reqs, nr, &r))
					goto out;
				continue;
			}
			memset(&r, 0, sizeof(r));
			r.op = API_PUT_DRIVE;
			if (schema_drive(&c, item, false, &r.drive))
				goto out;
			snprintf(r.path_id, sizeof(r.path_id), "%s", r.drive.blk.id);
			if (config_push(reqs, nr, &r))
				goto out;
		}
	}
	if (config_object(err, errlen, root, "vsock", &o) < 0)
		goto out;
	if (o) {
		struct jctx c = { "vsock", "", err, errlen };
		memset(&r, 0, sizeof(r));
		r.op = API_PUT_VSOCK;
		if (schema_vsock(&c, o, &r.vsock) || config_push(reqs, nr, &r))
			goto out;
	}
	ret = 0;
out:
	json_decref(root);
	if (ret) {
		free(*reqs);
		*reqs = NULL;
		*nr = 0;
	}
	return ret;
}
