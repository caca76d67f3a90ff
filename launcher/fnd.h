/* mote-fnd: the serverless launcher. One process, one event loop
 * (launcher/evloop.c): it serves the functions API over a unix socket
 * (launcher/http.c), starts one mote per function instance, the first by
 * a cold boot that is then snapshotted (its warm snapshot), every later
 * one as a clone restored from that snapshot (jailed via mote-jailer when
 * running as root), passes each invocation to an instance over its vsock
 * socket (guest/fn/protocol.h) and stops instances idle past their TTL.
 *
 * It holds no connection to an idle VM: an instance costs the daemon a
 * pid and a few hundred bytes; an invocation in flight one socket. */
#ifndef MOTE_LAUNCHER_FND_H
#define MOTE_LAUNCHER_FND_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "launcher/admit.h"

struct fnd_config {
	const char *sock_path;      /* the API socket */
	const char *state_dir;      /* snapshots, instance directories, jails, logs */
	const char *mote_bin;       /* static mote binary */
	const char *jailer_bin;     /* mote-jailer; NULL or jail=false: no jail */
	bool jail;
	uid_t uid;                  /* the jailed monitors' ids */
	gid_t gid;
	struct admit_limits limits;
	unsigned boot_timeout_ms;   /* cold boot to the runtime's ready line */
	unsigned restore_timeout_ms;/* restore to the first stream accepted */
	const char *mote_log_level; /* the monitors' --log-level */
	bool keep_logs;             /* keep every instance's log, not only failed ones' */
	/* Jails entered with pivot_root instead of mote-jailer --move-root:
	 * pivot_root walks every thread on the host, ~9 ms a start with 5,000
	 * VMs live here, and more with more. */
	bool pivot_root;
	bool no_tmpfs;              /* jailed: keep the jails on the state directory's fs */
};

struct fnd;

int fnd_create(struct fnd **out, const struct fnd_config *cfg, char *err, size_t errlen);
/* Runs until SIGTERM/SIGINT, then stops every instance. */
int fnd_run(struct fnd *d);
void fnd_destroy(struct fnd *d);

#endif
