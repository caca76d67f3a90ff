/* The pure parts of mote-fnd's API: which route a request names, and a
 * function's registration document (PUT /functions/{name}) validated
 * strictly, the way api/schema.c treats the monitor's bodies. */
#ifndef MOTE_LAUNCHER_SPEC_H
#define MOTE_LAUNCHER_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FN_NAME_MAX 32
#define FN_PATH_MAX 1024

/* Defaults and bounds of a registration. */
#define FN_DEFAULT_MEM_MIB 16
#define FN_MIN_MEM_MIB 2
#define FN_MAX_MEM_MIB 65536
#define FN_MAX_VCPUS 2
#define FN_DEFAULT_TTL_S 60
#define FN_MAX_TTL_S 86400
#define FN_DEFAULT_MAX_INSTANCES 100
#define FN_MAX_MAX_INSTANCES 20000
#define FN_MAX_CONCURRENCY 64
#define FN_DEFAULT_TIMEOUT_MS 10000
#define FN_MAX_TIMEOUT_MS 600000
#define FN_MAX_STANDBY 16

struct fn_spec {
	char name[FN_NAME_MAX + 1];
	char image[FN_PATH_MAX];   /* absolute path of the PVH image */
	unsigned mem_mib, vcpus, concurrency, idle_ttl_s, max_instances, timeout_ms;
	bool snapshot;             /* false: every start boots (benchmarks, debugging) */
	/* Clones kept restored and paused, ready to run the moment a start
	 * needs one (0: none; a start then jails, execs and restores). */
	unsigned standby;
};

enum fnd_route {
	ROUTE_NOT_FOUND,
	ROUTE_BAD_METHOD,
	ROUTE_LIST,      /* GET /functions */
	ROUTE_PUT,       /* PUT /functions/{name} */
	ROUTE_GET,       /* GET /functions/{name} */
	ROUTE_DELETE,    /* DELETE /functions/{name} */
	ROUTE_INVOKE,    /* POST /functions/{name}/invoke */
	ROUTE_SCALE,     /* POST /functions/{name}/scale {"add": N}: start N instances now */
	ROUTE_CHECK,     /* POST /functions/{name}/check: invoke every idle instance once */
	ROUTE_METRICS,   /* GET /metrics */
	ROUTE_BAD_NAME,  /* /functions/{name} with a name that cannot be one */
};

/* Letters, digits and '-', 1..FN_NAME_MAX, not starting with '-' (it names
 * jail directories and cgroups too). */
bool fn_name_valid(const char *name);

/* method + path -> route; name receives the {name} part. */
enum fnd_route fnd_route(const char *method, const char *path, char name[FN_NAME_MAX + 1]);

/* Parses a registration body for function `name`: {"image": "/abs/path",
 * "mem_mib", "vcpus", "concurrency", "idle_ttl_s", "max_instances",
 * "timeout_ms", "snapshot", "standby"} (all but image optional). 0, or -1 with a message naming
 * the field in err. */
int fn_spec_parse(const char *name, const char *body, size_t len, struct fn_spec *out, char *err,
		  size_t errlen);

#endif
