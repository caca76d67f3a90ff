#include "virtio/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <net/if.h>
#include <linux/if_tun.h>

#include "virtio/net.h"

/* Older uapi headers lack USO (Linux 6.2). */
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

_Static_assert(TAP_OFF_CSUM == TUN_F_CSUM && TAP_OFF_TSO4 == TUN_F_TSO4 &&
		       TAP_OFF_TSO6 == TUN_F_TSO6 && TAP_OFF_ECN == TUN_F_TSO_ECN &&
		       TAP_OFF_UFO == TUN_F_UFO && TAP_OFF_USO4 == TUN_F_USO4 &&
		       TAP_OFF_USO6 == TUN_F_USO6,
	       "offload bits are the kernel's");

/* Which offload sets the kernel takes: TUNSETOFFLOAD fails with EINVAL on
 * a bit it does not know (USO before 6.2, UFO between 4.14 and 6.1). */
static unsigned tap_probe_offloads(int fd)
{
	static const unsigned sets[] = { TAP_OFF_CSUM, TAP_OFF_TSO4 | TAP_OFF_TSO6 | TAP_OFF_ECN,
					 TAP_OFF_UFO, TAP_OFF_USO4 | TAP_OFF_USO6 };
	unsigned ok = 0;

	if (tap_set_offload(fd, TAP_OFF_CSUM))
		return 0;
	ok = TAP_OFF_CSUM;
	for (size_t i = 1; i < sizeof(sets) / sizeof(sets[0]); i++)
		if (!tap_set_offload(fd, ok | sets[i]))
			ok |= sets[i];
	/* Nothing offloaded until the guest says what it can take. */
	tap_set_offload(fd, 0);
	return ok;
}

int tap_open(const char *name, unsigned *supported, char *err, size_t errlen)
{
	struct ifreq ifr;
	int hdr_len = (int)sizeof(struct virtio_net_hdr_v1);
	int fd, ret;

	if (!name[0] || strlen(name) > TAP_NAME_MAX) {
		snprintf(err, errlen, "TAP name '%s' must be 1-%d characters", name, TAP_NAME_MAX);
		return -EINVAL;
	}
	/* TUNSETIFF would create a missing TAP, which then vanishes with
	 * mote: attach only to one the host set up. */
	if (!if_nametoindex(name)) {
		snprintf(err, errlen, "TAP '%s' does not exist (create it first: ip tuntap add dev "
			 "%s mode tap)", name, name);
		return -ENODEV;
	}
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot open /dev/net/tun: %s", strerror(errno));
		return ret;
	}
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot attach to TAP '%s': %s%s", name, strerror(errno),
			 errno == EBUSY ? " (another process uses it)"
			 : errno == EINVAL ? " (is it a TAP, not a TUN or another kind of device?)"
					   : "");
		goto fail;
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr_len) < 0) {
		ret = -errno;
		snprintf(err, errlen, "TAP '%s': TUNSETVNETHDRSZ: %s", name, strerror(errno));
		goto fail;
	}
	*supported = tap_probe_offloads(fd);
	return fd;
fail:
	close(fd);
	return ret;
}

int tap_set_offload(int fd, unsigned offloads)
{
	return ioctl(fd, TUNSETOFFLOAD, (unsigned long)offloads) < 0 ? -errno : 0;
}

ssize_t tap_read(int fd, void *buf, size_t len)
{
	ssize_t n = read(fd, buf, len);

	return n < 0 ? -errno : n;
}

ssize_t tap_writev(int fd, const struct iovec *iov, int iovcnt)
{
	ssize_t n = writev(fd, iov, iovcnt);

	return n < 0 ? -errno : n;
}
