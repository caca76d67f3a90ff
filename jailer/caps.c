/* Giving up root for good, the last thing before exec: no capabilities in
 * any set, an empty bounding set, no supplementary groups, the jail's
 * uid/gid as real, effective and saved ids, and no_new_privs.
 * libcap-ng changes the sets, from a state it is told (capng_clear), never
 * from one it reads: capng_get_caps_process() looks at /proc/<pid>/status
 * (not in the jail) and then probes cap by cap, ~160 system calls per
 * function start. The checks afterwards read the kernel's view directly
 * (capget, PR_CAPBSET_READ): a second way of looking, not the library's
 * own idea of what it did. */
#include "jailer/jailer.h"

#include <cap-ng.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

static int caps_held(bool *held)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	if (syscall(SYS_capget, &hdr, data))
		return -errno;
	*held = false;
	for (unsigned i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		*held |= (data[i].effective | data[i].permitted | data[i].inheritable) != 0;
	return 0;
}

/* Whether any capability is left in the bounding set: the kernel answers
 * EINVAL past its last one. */
static bool bounding_set_empty(void)
{
	for (unsigned long cap = 0;; cap++) {
		int r = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
		if (r < 0)
			return errno == EINVAL && cap > 0;
		if (r > 0)
			return false;
	}
}

int jail_drop_privileges(uid_t uid, gid_t gid)
{
	bool held = true;

	/* The bounding set caps what any later exec could gain (a file with
	 * capabilities, a setuid-root binary). Emptying it needs
	 * CAP_SETPCAP, so it goes first, while we still have it. */
	capng_clear(CAPNG_SELECT_ALL);
	if (capng_apply(CAPNG_SELECT_BOUNDS))
		return jail_fail("dropping privileges", "clearing the capability bounding set",
				 -EPERM);
	/* Root's supplementary groups (disk, kvm, ...) would otherwise follow
	 * the monitor into the jail. Groups and gid before uid: changing them
	 * needs the privileges that setresuid gives up. */
	if (setgroups(0, NULL))
		return jail_fail("dropping privileges", "setgroups(0)", -errno);
	if (setresgid(gid, gid, gid))
		return jail_fail("dropping privileges", "setresgid", -errno);
	/* Real, effective and saved uid all change, so none is left to
	 * switch back to. With PR_SET_KEEPCAPS off (the default), leaving
	 * uid 0 also empties the permitted, effective and ambient sets. */
	if (setresuid(uid, uid, uid))
		return jail_fail("dropping privileges", "setresuid", -errno);
	/* What the uid change does not clear: the inheritable set, and
	 * everything when the jail's uid is 0 itself. */
	capng_clear(CAPNG_SELECT_ALL);
	if (capng_apply(CAPNG_SELECT_CAPS))
		return jail_fail("dropping privileges", "clearing the capability sets", -EPERM);
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return jail_fail("dropping privileges", "clearing the ambient set", -errno);
	/* Check rather than trust: a jail that could become root again is
	 * worse than no jail, because it looks like one. */
	if (caps_held(&held) || held)
		return jail_fail("dropping privileges", "capabilities still held", -EPERM);
	/* (The ambient set needs no look: the kernel keeps it within
	 * permitted and inheritable, both seen empty.) */
	if (!bounding_set_empty())
		return jail_fail("dropping privileges", "bounding set not empty", -EPERM);
	if (uid != 0 && (setuid(0) == 0 || seteuid(0) == 0))
		return jail_fail("dropping privileges", "uid 0 could be regained", -EPERM);
	/* From here on no execve (of the monitor, or of anything it might be
	 * tricked into running) can grant privileges: setuid bits and file
	 * capabilities are ignored. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return jail_fail("dropping privileges", "PR_SET_NO_NEW_PRIVS", -errno);
	return 0;
}
