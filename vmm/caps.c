/* mote run as root without the jailer holds every capability. After
 * start-up it needs none: /dev/kvm, the kernel, the drives and every fd
 * are open before this runs, and nothing is opened later. Plain
 * prctl/capset rather than libcap-ng: a dozen lines, and no library
 * constructor in the start-up path. */
#include "vmm/caps.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/capability.h>

int caps_drop_all(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
	bool held = false, setpcap;

	if (syscall(SYS_capget, &hdr, data))
		return -errno;
	for (unsigned i = 0; i < _LINUX_CAPABILITY_U32S_3; i++)
		held |= (data[i].effective | data[i].permitted | data[i].inheritable) != 0;
	if (!held)
		return 0;
	/* The bounding set limits what an exec could gain back (with seccomp
	 * on, NO_NEW_PRIVS stops that too). Emptying it needs CAP_SETPCAP, so
	 * it goes first, while we still have it. */
	setpcap = data[CAP_TO_INDEX(CAP_SETPCAP)].effective & CAP_TO_MASK(CAP_SETPCAP);
	for (unsigned long cap = 0; setpcap; cap++) {
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0)
			continue;
		if (errno == EINVAL)
			break; /* past the kernel's last capability */
		return -errno;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return -errno;
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data))
		return -errno;
	return 0;
}
