/* See spec.h. */
#include "launcher/spec.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

bool fn_name_valid(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > FN_NAME_MAX || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)name[i]) && name[i] != '-')
			return false;
	return true;
}

enum fnd_route fnd_route(const char *method, const char *path, char name[FN_NAME_MAX + 1])
{
	static const char prefix[] = "/functions/";
	const size_t plen = sizeof(prefix) - 1;

	name[0] = '\0';
	if (!strcmp(path, "/metrics"))
		return strcmp(method, "GET") ? ROUTE_BAD_METHOD : ROUTE_METRICS;
	if (!strcmp(path, "/functions") || !strcmp(path, "/functions/"))
		return strcmp(method, "GET") ? ROUTE_BAD_METHOD : ROUTE_LIST;
	if (strncmp(path, prefix, plen))
		return ROUTE_NOT_FOUND;
	const char *rest = path + plen;
	const char *slash = strchr(rest, '/');
	size_t nlen = slash ? (size_t)(slash - rest) : strlen(rest);
	if (nlen == 0 || nlen > FN_NAME_MAX)
		return ROUTE_BAD_NAME;
	memcpy(name, rest, nlen);
	name[nlen] = '\0';
	if (!fn_name_valid(name))
		return ROUTE_BAD_NAME;
	if (slash) {
		static const struct {
			const char *suffix;
			enum fnd_route route;
		} actions[] = { { "/invoke", ROUTE_INVOKE }, { "/scale", ROUTE_SCALE },
				{ "/check", ROUTE_CHECK } };
		for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
			if (!strcmp(slash, actions[i].suffix))
				return strcmp(method, "POST") ? ROUTE_BAD_METHOD : actions[i].route;
		return ROUTE_NOT_FOUND;
	}
	if (!strcmp(method, "PUT"))
		return ROUTE_PUT;
	if (!strcmp(method, "GET"))
		return ROUTE_GET;
	if (!strcmp(method, "DELETE"))
		return ROUTE_DELETE;
	return ROUTE_BAD_METHOD;
}

static int get_uint(json_t *o, const char *key, unsigned lo, unsigned hi, unsigned def,
		    unsigned *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);

	if (!v) {
		*out = def;
		return 0;
	}
	if (!json_is_integer(v)) {
		snprintf(err, errlen, "%s must be an integer", key);
		return -1;
	}
	json_int_t x = json_integer_value(v);
	if (x < (json_int_t)lo || x > (json_int_t)hi) {
		snprintf(err, errlen, "%s must be between %u and %u, got %lld", key, lo, hi,
			 (long long)x);
		return -1;
	}
	*out = (unsigned)x;
	return 0;
}

int fn_spec_parse(const char *name, const char *body, size_t len, struct fn_spec *out, char *err,
		  size_t errlen)
{
	static const char *const known[] = { "image", "mem_mib", "vcpus", "concurrency",
					     "idle_ttl_s", "max_instances", "timeout_ms",
					     "snapshot", "standby" };
	json_error_t je;
	json_t *o;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	if (!fn_name_valid(name)) {
		snprintf(err, errlen, "function name '%s' is not 1-%d letters, digits or '-'", name,
			 FN_NAME_MAX);
		return -1;
	}
	strcpy(out->name, name);
	if (!body || !len) {
		snprintf(err, errlen, "a JSON body is required: {\"image\": \"/path/to/fn.elf\", ...}");
		return -1;
	}
	o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (!o) {
		snprintf(err, errlen, "bad JSON at line %d column %d: %s", je.line, je.column, je.text);
		return -1;
	}
	if (!json_is_object(o)) {
		snprintf(err, errlen, "the body must be a JSON object");
		goto out;
	}
	const char *key;
	json_t *val;
	json_object_foreach(o, key, val) {
		bool ok = false;
		for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
			ok |= !strcmp(key, known[i]);
		if (!ok) {
			snprintf(err, errlen, "unknown field '%s'", key);
			goto out;
		}
	}
	json_t *img = json_object_get(o, "image");
	if (!json_is_string(img)) {
		snprintf(err, errlen, "image is required and must be a string (the function's "
				      "image path)");
		goto out;
	}
	const char *path = json_string_value(img);
	if (path[0] != '/' || strlen(path) >= sizeof(out->image)) {
		snprintf(err, errlen, "image must be an absolute path shorter than %zu bytes",
			 sizeof(out->image));
		goto out;
	}
	strcpy(out->image, path);
	if (get_uint(o, "mem_mib", FN_MIN_MEM_MIB, FN_MAX_MEM_MIB, FN_DEFAULT_MEM_MIB,
		     &out->mem_mib, err, errlen) ||
	    get_uint(o, "vcpus", 1, FN_MAX_VCPUS, 1, &out->vcpus, err, errlen) ||
	    get_uint(o, "concurrency", 1, FN_MAX_CONCURRENCY, 1, &out->concurrency, err, errlen) ||
	    get_uint(o, "idle_ttl_s", 0, FN_MAX_TTL_S, FN_DEFAULT_TTL_S, &out->idle_ttl_s, err,
		     errlen) ||
	    get_uint(o, "max_instances", 1, FN_MAX_MAX_INSTANCES, FN_DEFAULT_MAX_INSTANCES,
		     &out->max_instances, err, errlen) ||
	    get_uint(o, "timeout_ms", 1, FN_MAX_TIMEOUT_MS, FN_DEFAULT_TIMEOUT_MS,
		     &out->timeout_ms, err, errlen) ||
	    get_uint(o, "standby", 0, FN_MAX_STANDBY, 0, &out->standby, err, errlen))
		goto out;
	json_t *snap = json_object_get(o, "snapshot");
	if (snap && !json_is_boolean(snap)) {
		snprintf(err, errlen, "snapshot must be true or false");
		goto out;
	}
	out->snapshot = !snap || json_is_true(snap);
	if (out->standby && !out->snapshot) {
		snprintf(err, errlen, "standby clones are restored from the warm snapshot: "
				      "\"standby\" needs \"snapshot\": true");
		goto out;
	}
	if (out->standby && !out->idle_ttl_s) {
		/* A standby's timer is the idle TTL: with 0 each one would be
		 * stopped as soon as made, and every start make them anew. */
		snprintf(err, errlen, "standby clones stop after idle_ttl_s unused: "
				      "\"standby\" needs \"idle_ttl_s\" above 0");
		goto out;
	}
	if (out->standby >= out->max_instances) {
		snprintf(err, errlen, "standby=%u leaves no room under max_instances=%u: "
				      "raise max_instances or lower standby",
			 out->standby, out->max_instances);
		goto out;
	}
	ret = 0;
out:
	json_decref(o);
	return ret;
}
