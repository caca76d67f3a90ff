/* The VM's lifecycle on the VMM thread: the pre-boot configuration being
 * built (from the command line, --config-file or the API), InstanceStart,
 * pause/resume, Ctrl+Alt+Del, metrics, and the answers to API requests.
 *
 * The API thread never touches VM state: controller_api_handler() queues
 * its request, wakes the VMM thread through an eventfd in the event loop,
 * and waits on a condition variable for the answer. */
#ifndef MOTE_VMM_CONTROLLER_H
#define MOTE_VMM_CONTROLLER_H

#include <stdbool.h>

#include "api/api.h"
#include "vmm/loop.h"
#include "vmm/vm.h"

/* Seeds the configuration (strings are copied) and registers the request
 * eventfd in the loop. Returns 0 or -errno. */
int controller_init(struct event_loop *loop, const struct vm_config *cfg, const char *instance_id,
		    bool no_api);
/* True once a kernel is configured. */
bool controller_has_boot_source(void);
/* Applies one request on the VMM thread (the API's and --config-file's). */
void controller_handle(const struct api_request *req, struct api_response *resp);
/* Builds and starts the VM from the configuration, as InstanceStart does.
 * Returns 0 or a mote_exit code (logged). */
int controller_boot(void);
struct controller_restore_opts {
	const char *state_path;
	const char *mem_path;
	bool resume;            /* run at once; else Paused until PATCH /vm Resumed */
	bool standby;           /* not resume: Paused until SIGUSR2 too, no sampling meanwhile */
	bool track_dirty_pages;
	bool clock_realtime;    /* advance the guest clock by the time spent saved */
	const char *prefetch_path;  /* working-set record to populate before resuming */
	const char *record_ws_path; /* write the pages this VM touched here at exit */
	const char *uffd_path;      /* Uffd backend: the page-fault handler's socket (no mem_path) */
	const char *vsock_uds_path; /* vsock_override: this clone's socket, NULL: as saved */
	uint64_t vsock_cid;         /* vsock_override: this clone's CID, 0: as saved */
	unsigned nr_net_overrides;  /* network_overrides: this clone's TAPs */
	const struct api_net_override *net_overrides;
};
/* Builds and starts the VM from a snapshot instead of a kernel (CLI
 * --restore, PUT /snapshot/load). Every file is checked before anything
 * runs. Returns 0 or a mote_exit code (logged). */
int controller_restore(const struct controller_restore_opts *o);
/* api_handler_fn for the API server; runs on the API thread. */
void controller_api_handler(void *opaque, const struct api_request *req,
			    struct api_response *resp);
/* A termination signal: stops the VM (if any) and the loop. */
void controller_request_exit(int code, const char *why);
/* SIGUSR1: every vCPU prints its registers. */
void controller_request_dump(void);
/* SIGUSR2: a --standby restore resumes, as PATCH /vm Resumed would; in any
 * other state (already resumed, never in standby) it is logged and ignored. */
void controller_standby_resume(void);
/* Answers what is still queued with an error and refuses new requests;
 * stops the vCPUs, restores the console, destroys the VM. */
void controller_shutdown(void);
/* The process exit code: the VM's, or the one requested before boot. */
int controller_exit_code(void);

#endif
