/* Process and file helpers of mote-fnd: starting a monitor, removing an
 * instance's directory, telling whether a function image changed. */
#ifndef MOTE_LAUNCHER_PROC_H
#define MOTE_LAUNCHER_PROC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

/* Starts argv[0] (vfork + exec) in cwd (NULL: unchanged) with stdout and
 * stderr in log_path (truncated first) and stdin on /dev/null, every signal
 * unblocked, and SIGKILL should the daemon die (mote-jailer keeps it
 * across its uid change). 0 with *pid, or -errno (exec failures too). */
int proc_spawn(char *const argv[], const char *cwd, const char *log_path, pid_t *pid);

/* Puts every thread of pid under a scheduling policy (SCHED_IDLE: it runs
 * only on a CPU nothing else wants; SCHED_OTHER: back to normal). Threads
 * made later inherit their creator's. 0, or -errno of the first thread
 * that could not be changed (-ESRCH: gone). Needs CAP_SYS_NICE for
 * another user's process. SCHED_IDLE is refused (-EPERM, nothing changed)
 * without CAP_SYS_NICE: leaving it needs that capability even for one's
 * own processes. */
int proc_sched_all(pid_t pid, int policy);

/* rm -rf path (no symlink is followed). 0 or -errno of the first failure. */
int proc_rmtree(const char *path);

/* mkdir -p with mode for every level made. */
int proc_mkdirs(const char *path, mode_t mode);

/* Copies what is left of in to out, up to in's end. 0, -errno of the
 * read or write that failed, or -EIO for a short write. */
int proc_copy_fd(int in, int out);

/* What identifies an image's content cheaply (size, mtime, inode) and
 * surely (a 64-bit FNV-1a over the bytes). */
struct file_ident {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	uint64_t hash;
};

/* stat only (hash left 0). */
int file_ident_stat(const char *path, struct file_ident *id);
/* stat + hash of the content. */
int file_ident_full(const char *path, struct file_ident *id);
/* Same size/mtime/inode. */
bool file_ident_same_stat(const struct file_ident *a, const struct file_ident *b);

/* The last `max` bytes of a file as a one-line string (newlines -> " | "),
 * for error messages that quote a monitor's log. */
void proc_log_tail(const char *path, char *out, size_t max);

#endif
