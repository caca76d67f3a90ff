/* mote's HTTP API: Firecracker's paths, bodies and status codes over a unix
 * socket.
 *
 *   api/server.c  the API thread: its own epoll over the listening socket and
 *                 the connections, one http_parser per connection, keep-alive,
 *                 a body limit; a complete request is routed and handed to the
 *                 VMM thread (api_handler_fn), whose answer it writes back.
 *   api/routes.c  method + path -> a typed struct api_request; also parses
 *                 --config-file documents.
 *   api/schema.c  each body validated strictly (jansson): unknown fields,
 *                 wrong types, missing fields and out-of-range values are
 *                 400s that name the field.
 *
 * The VMM side (vmm/controller.c) owns the VM and answers the requests. */
#ifndef MOTE_API_API_H
#define MOTE_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/blk.h"
#include "virtio/net.h"
#include "virtio/vsock_proto.h"
#include "vmm/cpuid.h"
#include "vmm/log.h"

#define API_DEFAULT_MAX_PAYLOAD 51200
#define API_PATH_MAX 4096        /* host paths in request bodies */
#define API_CMDLINE_MAX 4096     /* boot_args, the same bound as the VM's */
#define API_ID_MAX 64            /* instance id (--id) */
#define API_MAX_VCPUS 32
#define API_MIN_MEM_MIB 2
#define API_MAX_MEM_MIB (1024 * 1024)

enum api_op {
	API_GET_INSTANCE_INFO,    /* GET / */
	API_PUT_BOOT_SOURCE,
	API_GET_MACHINE_CONFIG,
	API_PUT_MACHINE_CONFIG,
	API_PATCH_MACHINE_CONFIG,
	API_PUT_DRIVE,
	API_PATCH_DRIVE,
	API_INSTANCE_START,       /* PUT /actions */
	API_SEND_CTRL_ALT_DEL,
	API_FLUSH_METRICS,
	API_PAUSE,                /* PATCH /vm */
	API_RESUME,
	API_GET_VM_CONFIG,
	API_PUT_LOGGER,
	API_PUT_METRICS,
	API_SNAPSHOT_CREATE,      /* PUT /snapshot/create */
	API_SNAPSHOT_LOAD,        /* PUT /snapshot/load */
	API_PUT_NET,              /* PUT /network-interfaces/{id} */
	API_PATCH_NET,
	API_GET_DEMAND,           /* GET /demand: mote's demand metrics */
	API_PUT_VSOCK,            /* PUT /vsock */
};

enum api_cache_type { API_CACHE_UNSAFE, API_CACHE_WRITEBACK };

struct api_boot_source {
	char kernel_path[API_PATH_MAX];
	char initrd_path[API_PATH_MAX];  /* "" when absent */
	char boot_args[API_CMDLINE_MAX]; /* "" when absent */
};

/* PUT sets every field (absent optional ones to their defaults); PATCH
 * only those with has_* set. */
struct api_machine_config {
	bool has_vcpu_count, has_mem_size, has_cpu_template, has_track_dirty_pages;
	bool track_dirty_pages;          /* KVM dirty log on: Diff snapshots */
	unsigned vcpu_count;
	uint64_t mem_size_mib;
	enum cpu_template cpu_template;
};

struct api_drive {
	struct blk_config blk;           /* id, path, read-only, root, rate limits */
	enum api_cache_type cache_type;
	bool has_path, has_rate_limiter; /* PATCH: what was asked to change */
};

struct api_net {
	struct net_config net;           /* id, TAP, MAC, MTU, rate limits */
	bool has_rx_rate_limiter, has_tx_rate_limiter; /* PATCH: what was asked to change */
};

struct api_vsock {
	struct vsock_config cfg;         /* guest_cid, uds_path */
	char id[API_ID_MAX + 1];         /* vsock_id, "" when absent */
};

struct api_logger {
	bool has_level;
	bool off;                        /* level "Off" */
	enum log_level level;
	char log_path[API_PATH_MAX];     /* "" keeps the current output */
	bool show_level, show_log_origin;
};

/* PUT /snapshot/create */
struct api_snapshot_create {
	char snapshot_path[API_PATH_MAX];
	char mem_file_path[API_PATH_MAX];
	bool diff;                       /* snapshot_type "Diff" */
};

/* network_overrides: this clone's TAP for one of the snapshot's interfaces */
struct api_net_override {
	char iface_id[NET_ID_MAX + 1];
	char host_dev_name[NET_TAP_NAME_MAX + 1];
};

/* PUT /snapshot/load (mem_backend File, or the legacy mem_file_path) */
struct api_snapshot_load {
	char snapshot_path[API_PATH_MAX];
	char mem_path[API_PATH_MAX];
	bool track_dirty_pages, resume_vm, clock_realtime;
	bool uffd;                       /* mem_backend Uffd: mem_path is the handler's socket */
	char vsock_uds_path[API_PATH_MAX]; /* vsock_override.uds_path, "" when absent */
	uint64_t vsock_cid;              /* vsock_override.guest_cid (mote's), 0 when absent */
	unsigned nr_net_overrides;
	struct api_net_override net_overrides[NET_MAX_IFACES];
};

struct api_request {
	enum api_op op;
	char path_id[BLK_ID_LEN + 1];    /* drive or interface id from the path */
	union {
		struct api_boot_source boot;
		struct api_machine_config machine;
		struct api_drive drive;
		struct api_net net;
		struct api_vsock vsock;
		struct api_logger logger;
		char metrics_path[API_PATH_MAX];
		struct api_snapshot_create snap_create;
		struct api_snapshot_load snap_load;
	};
};

struct api_response {
	int status;                      /* 200, 204 or 400 */
	char *body;                      /* malloc'd JSON, NULL for 204 */
};

/* 400 with {"fault_message": "..."}. */
void api_response_error(struct api_response *resp, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* status with body (taken over: freed by api_response_free). */
void api_response_body(struct api_response *resp, int status, char *body);
void api_response_free(struct api_response *resp);

/* Maps a request to *req and returns 0, or fills *resp and returns 1 when
 * it is answered without the VMM: every validation error (400), GET
 * /version, and the bodies of devices this build does not have yet. */
int api_route(const char *method, const char *path, const char *body, size_t body_len,
	      struct api_request *req, struct api_response *resp);

/* Parses a --config-file document (the schema of GET /vm/config) into the
 * requests that configure the same VM, in the order to apply them: logger,
 * metrics, machine-config, boot-source, drives, network interfaces. Returns 0 with *reqs
 * (free()) and *nr, or -1 with a message naming the field in err. */
int api_parse_vm_config(const char *json, size_t len, struct api_request **reqs, size_t *nr,
			char *err, size_t errlen);

/* ---- the server ------------------------------------------------------------ */

/* Runs on the API thread; fills resp (blocking until the VMM answered). */
typedef void (*api_handler_fn)(void *opaque, const struct api_request *req,
			       struct api_response *resp);

struct api_server_config {
	const char *sock_path;
	size_t max_payload;              /* body bytes, API_DEFAULT_MAX_PAYLOAD */
	api_handler_fn handler;
	void *opaque;
};

struct api_server;

/* Binds and listens on the socket (on the calling thread, so start-up
 * errors are reported before anything else runs). A stale socket file
 * nobody listens on is replaced; anything else at the path is an error.
 * Returns 0 or -errno with a message in err. */
int api_server_open(struct api_server **out, const struct api_server_config *cfg, char *err,
		    size_t errlen);
/* Starts the API thread. */
int api_server_start(struct api_server *s);
/* Stops and joins the thread, closes every connection, removes the socket. */
void api_server_stop(struct api_server *s);

/* One connection's HTTP engine without the socket: api/server.c's core,
 * which the fuzzer drives directly. */
struct api_conn;

struct api_conn *api_conn_new(size_t max_payload, api_handler_fn handler, void *opaque);
void api_conn_free(struct api_conn *c);
/* Parses bytes; every complete request is answered into the output buffer.
 * Returns 0, or -1 when the connection must be closed once the output is
 * sent (bad HTTP, body over the limit, Connection: close). */
int api_conn_feed(struct api_conn *c, const char *data, size_t len);
const char *api_conn_output(const struct api_conn *c, size_t *len);
void api_conn_consume(struct api_conn *c, size_t n);

#endif
