/* mote-fnd's spawner: a small helper process that starts monitors for the
 * daemon, so the daemon's event loop never waits for an exec.
 *
 * vfork (and posix_spawn) stop the caller until the child has exec'd; on a
 * busy host that child waits for a CPU, and the whole daemon (every client,
 * every stream) waits with it: 13 ms p50 and 33 ms p99 per start at 16
 * starts at a time here. The helper, forked while the daemon is still
 * small, takes requests over a socket (argv, working directory, the log
 * and /dev/null as passed fds) and starts each one with
 * clone(CLONE_VM | CLONE_VFORK | CLONE_PARENT): the helper waits for the
 * exec, the daemon does not, and the new process is the *daemon's* child
 * (CLONE_PARENT), so the daemon reaps it (SIGCHLD), and its parent-death
 * signal (SIGKILL) is tied to the daemon. The reply (tag, pid or errno)
 * comes back on the same socket, which the daemon's loop watches. */
#ifndef MOTE_LAUNCHER_SPAWNER_H
#define MOTE_LAUNCHER_SPAWNER_H

#include <stdint.h>
#include <sys/types.h>

struct spawner;

/* Forks the helper. Call before the daemon blocks signals or opens much:
 * the helper closes every fd but its socket. 0 or -errno. */
int spawner_open(struct spawner **out);
/* The daemon's end of the socket (SOCK_SEQPACKET, non-blocking): readable
 * when replies wait, hung up when the helper is gone. */
int spawner_fd(const struct spawner *s);
/* Asks for argv[0] to be started in cwd (NULL: the helper's, which is the
 * daemon's at spawner_open) with stdin on null_fd and stdout/stderr on
 * log_path (created or truncated, 0640, by the helper: a new file costs
 * the loop nothing), every signal unblocked and SIGKILL when the daemon
 * dies. null_fd is copied into the message; the caller keeps its own.
 * Never blocks: -EAGAIN when the helper has too much unread, -EPIPE when it
 * is gone, -E2BIG for argv + paths over SPAWN_MSG_MAX. */
int spawner_request(struct spawner *s, uint64_t tag, char *const argv[], const char *cwd,
		    const char *log_path, int null_fd);
/* Takes one reply: 1 with *tag and either *pid (> 0) or *err (a positive
 * errno of the exec or of the helper), 0 when none is waiting, -EPIPE when
 * the helper is gone. */
int spawner_reply(struct spawner *s, uint64_t *tag, pid_t *pid, int *err);
/* Ends the helper (it is the daemon's child: reaped here). */
void spawner_close(struct spawner *s);

#define SPAWN_MSG_MAX 12288

/* The wire format, exposed for the unit test: a header, then cwd (maybe
 * empty), the log path and each argv string, NUL-terminated, back to back. */
struct spawn_msg_hdr {
	uint64_t tag;
	uint32_t argc;
	uint32_t len;  /* bytes of strings after the header */
};
struct spawn_reply {
	uint64_t tag;
	int32_t pid;   /* > 0, or 0 with err */
	int32_t err;
};
/* Packs a request into buf; returns its length or -E2BIG (-EINVAL: no
 * program, no log). */
int spawn_msg_pack(char *buf, size_t cap, uint64_t tag, char *const argv[], const char *cwd,
		   const char *log_path);
/* Unpacks in place: argv (argv_cap entries, NULL-terminated) points into
 * buf, *cwd is NULL when empty. 0 or -EINVAL for a malformed message. */
int spawn_msg_unpack(char *buf, size_t len, uint64_t *tag, char **argv, size_t argv_cap,
		     const char **cwd, const char **log_path);

#endif
