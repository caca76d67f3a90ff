/*
 * vsock.h - virtio-vsock driver and scenarios of the test unikernel
 * (virtio 1.2, 5.10): stream sockets only, three queues (rx, tx, event).
 */
#ifndef MOTE_GUEST_VSOCK_H
#define MOTE_GUEST_VSOCK_H

#include "virtio.h"

#define VIRTIO_ID_VSOCK 19

/* Runs the scenario if name is a vsock-* one (vsock-echo, vsock-client);
 * returns 1 with *code set, or 0 if the name is not a vsock scenario. */
int vsock_test_run(const char *name, size_t len, int *code);

/*
 * Stream API for a program built on the unikernel (guest/fn/), one
 * program per guest. Single-threaded and polled: vsock_poll() handles
 * what the device did and calls the app's callbacks; vsock_wait() sleeps
 * until the device interrupts. A struct vsock_conn is valid from
 * accept (or vsock_connect) until the app's closed() callback returns.
 */
struct vsock_conn;

struct vsock_app {
	/* A host connection to the listening port: 1 accepts it (the app
	 * may set its buf_alloc here, without telling), 0 refuses (RST). */
	int (*accept)(struct vsock_conn *c);
	/* Payload of a packet, in RX buffer buf: the app owns the buffer
	 * until vsock_release(). */
	void (*data)(struct vsock_conn *c, uint16_t buf, const uint8_t *p, uint32_t len);
	/* The host shut a side (vsock_peer_shut() says which); may be NULL. */
	void (*shutdown)(struct vsock_conn *c);
	/* The stream is gone (host RST, vsock_reset(), transport reset after
	 * a snapshot restore): the app releases the buffers it holds. */
	void (*closed)(struct vsock_conn *c);
};

#define VSOCK_SHUT_RCV  1u
#define VSOCK_SHUT_SEND 2u

/* Finds and starts the device (vbuf=, vnbufs=, vbufalloc= on the command
 * line as for the scenarios), listens on listen_port. 0 or -errno. */
int vsock_app_open(const struct vsock_app *app, uint32_t listen_port);
int vsock_poll(void);             /* 1 if anything moved */
void vsock_wait(void);            /* kick what is queued, hlt until a queue has news */
/* Asks the device to interrupt at its next used entry (it need not while
 * the driver is busy, with EVENT_IDX): before running something long
 * with interrupts on, or after polling from an interrupt. */
void vsock_arm_notify(void);
/* Connects to the host (CID 2) port; established once vsock_established(). */
struct vsock_conn *vsock_connect(uint32_t port);
int vsock_established(struct vsock_conn *c);
uint32_t vsock_peer_shut(struct vsock_conn *c);
/* Whether the host's last packet counted every byte sent on c as taken
 * (the monitor's fwd_cnt: written to its host socket). */
int vsock_all_acked(struct vsock_conn *c);
/* Queues up to len bytes as the host's credit allows; returns how many.
 * The bytes must stay put until vsock_tx_inflight() drops to 0. */
uint32_t vsock_send(struct vsock_conn *c, const void *data, uint32_t len);
uint32_t vsock_tx_inflight(void);
/* on: the app waits for vsock_tx_inflight() to drop, so TX completions
 * must interrupt a vsock_wait(); off (the default in app mode): they are
 * reaped at the next poll without an interrupt. */
void vsock_want_tx_done(int on);
/* Gives an RX buffer back; len bytes of c's stream count as consumed
 * (c may be NULL once the stream is gone). */
void vsock_release(struct vsock_conn *c, uint16_t buf, uint32_t len);
/* What c advertises as its receive buffer; tell: send a credit update. */
void vsock_set_buf_alloc(struct vsock_conn *c, uint32_t buf_alloc, int tell);
void vsock_credit_update(struct vsock_conn *c);
void vsock_shutdown(struct vsock_conn *c);   /* both sides, once */
void vsock_reset(struct vsock_conn *c);      /* RST; closed() runs */
void vsock_set_app_data(struct vsock_conn *c, void *data);
void *vsock_app_data(struct vsock_conn *c);
uint32_t vsock_transport_resets(void);

#endif /* MOTE_GUEST_VSOCK_H */
