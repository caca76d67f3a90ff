/* virtio-net device (virtio 1.2, 5.1) on a host TAP (virtio/tap.c).
 *
 * Queue 0 receives (TAP -> guest), queue 1 transmits (guest -> TAP).
 * TX is zero-copy: the guest's buffers go to writev() as they are, behind
 * a checked copy of the header. RX reads one frame at a time into a
 * bounce buffer of the largest frame and copies it into guest buffers
 * (several with MRG_RXBUF). When the guest has posted no RX buffers the
 * device stops polling the TAP (the kernel's TAP queue bounds what waits)
 * until the guest kicks the RX queue. */
#ifndef MOTE_VIRTIO_NET_H
#define MOTE_VIRTIO_NET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/loop.h"
#include "virtio/ratelimit.h"
#include "virtio/virtio.h"

#define NET_MAX_IFACES 4
#define NET_ID_MAX 64
#define NET_TAP_NAME_MAX 15

/* Feature bits (5.1.3) */
#define VIRTIO_NET_F_CSUM       0
#define VIRTIO_NET_F_GUEST_CSUM 1
#define VIRTIO_NET_F_MTU        3
#define VIRTIO_NET_F_MAC        5
#define VIRTIO_NET_F_GUEST_TSO4 7
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_GUEST_ECN  9
#define VIRTIO_NET_F_GUEST_UFO  10
#define VIRTIO_NET_F_HOST_TSO4  11
#define VIRTIO_NET_F_HOST_TSO6  12
#define VIRTIO_NET_F_HOST_ECN   13
#define VIRTIO_NET_F_HOST_UFO   14
#define VIRTIO_NET_F_MRG_RXBUF  15
#define VIRTIO_NET_F_STATUS     16
#define VIRTIO_NET_F_GUEST_USO4 54
#define VIRTIO_NET_F_GUEST_USO6 55
#define VIRTIO_NET_F_HOST_USO   56

/* The header in front of every frame (5.1.6); 12 bytes with VERSION_1. */
struct virtio_net_hdr_v1 {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;
	uint16_t csum_offset;
	uint16_t num_buffers;
};
_Static_assert(sizeof(struct virtio_net_hdr_v1) == 12, "virtio_net_hdr_v1 layout");

#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE   0
#define VIRTIO_NET_HDR_GSO_TCPV4  1
#define VIRTIO_NET_HDR_GSO_UDP    3
#define VIRTIO_NET_HDR_GSO_TCPV6  4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#define VIRTIO_NET_HDR_GSO_ECN    0x80

#define NET_ETH_HLEN 14
/* Largest frame after the header: 64 KiB of GSO payload plus headers,
 * the size the spec asks of GUEST_TSO buffers (65562 with the header). */
#define NET_MAX_FRAME 65550

struct net_config {
	char id[NET_ID_MAX + 1];               /* iface_id */
	char tap[NET_TAP_NAME_MAX + 1];        /* host_dev_name */
	uint8_t mac[6];
	bool has_mac;                          /* else derived at boot */
	uint16_t mtu;                          /* 0: no MTU feature */
	struct token_bucket_config rx_bw, rx_ops, tx_bw, tx_ops;
};

struct net_stats {
	_Atomic uint64_t rx_frames, rx_bytes, tx_frames, tx_bytes;
	_Atomic uint64_t rx_dropped;      /* frames the device could not deliver */
	_Atomic uint64_t rx_no_buffers;   /* times RX stopped: the guest had no buffers */
	_Atomic uint64_t tx_dropped;      /* guest frames refused (bad header/length) */
	_Atomic uint64_t tx_errors;       /* the TAP refused a frame */
	_Atomic uint64_t rx_rate_limited, tx_rate_limited;
	struct rl_throttle rx_throttled, tx_throttled; /* time each direction was held */
};

struct virtio_net;

/* Parses "tap=NAME[,mac=MAC][,id=ID][,mtu=N][,rx-bw=B][,tx-bw=B][,rx-ops=N][,tx-ops=N]"
 * (bandwidth in bytes per second). */
int net_parse_arg(const char *arg, struct net_config *cfg, char *err, size_t errlen);
/* "06:00:ac:10:00:02" -> 6 bytes; -EINVAL unless unicast and well formed. */
int net_parse_mac(const char *s, uint8_t mac[6]);
/* A stable, locally administered unicast MAC from the VM and iface ids. */
void net_derive_mac(const char *vm_id, const char *iface_id, uint8_t mac[6]);

/* Hostile-input checks, exposed for unit tests. */
/* A guest TX header for a frame of frame_len bytes (after the header)
 * under the negotiated features: 0 or -EINVAL. */
int net_check_tx_hdr(const struct virtio_net_hdr_v1 *h, uint64_t features, uint64_t frame_len);
/* A header from the TAP: what the guest did not negotiate is cleared;
 * -EINVAL if the frame cannot be given to this guest at all. */
int net_fix_rx_hdr(struct virtio_net_hdr_v1 *h, uint64_t features);
/* TUNSETOFFLOAD bits for what the guest can receive. */
unsigned net_tap_offloads(uint64_t features);
/* Features the device offers with a TAP that supports tap_offloads. */
uint64_t net_device_features(unsigned tap_offloads, const struct net_config *cfg);

/* Attaches to cfg->tap. -errno with a message in err. */
int virtio_net_create(struct virtio_net **out, const struct net_config *cfg,
		      struct event_loop *loop, const char *name, char *err, size_t errlen);
/* The same on an fd that behaves like a TAP queue (taken over). */
int virtio_net_create_fd(struct virtio_net **out, int fd, unsigned tap_offloads,
			 const struct net_config *cfg, struct event_loop *loop, const char *name,
			 char *err, size_t errlen);
struct virtio_device *virtio_net_device(struct virtio_net *n);
const struct net_stats *virtio_net_stats(const struct virtio_net *n);
/* PATCH of a running VM's limiters (NULL: leave that direction). */
int virtio_net_set_rate_limits(struct virtio_net *n, const struct token_bucket_config *rx_bw,
			       const struct token_bucket_config *rx_ops,
			       const struct token_bucket_config *tx_bw,
			       const struct token_bucket_config *tx_ops);
void virtio_net_destroy(struct virtio_net *n);

#endif
