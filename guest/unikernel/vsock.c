/*
 * vsock.c - a virtio-vsock driver (stream sockets) and two scenarios:
 *
 *   test=vsock-echo    listens on vport=P (default 5000) and echoes every
 *                      byte back on the same stream, for many streams at
 *                      once, until vconns=N (default 1) streams have closed.
 *   test=vsock-client  connects to host CID 2 port vport=P, sends vbytes=N
 *                      bytes of the pattern "byte i = i & 0xff", shuts its
 *                      sending side and expects 8 bytes back from the host:
 *                      the byte count and the byte sum (both u32), then the
 *                      host's close. vexpect=refused: expects a RST instead.
 *
 * Guest CPL0 code is emulated on the development machines (~260 ns an
 * instruction), so nothing here touches payload bytes: the echo re-posts
 * the very RX buffer it received as a TX packet (the header is rewritten
 * in place, the payload stays where the device put it), and the client
 * sends one pattern buffer over and over (the pattern's period, 256,
 * divides every chunk).
 *
 * The same driver serves programs through a small stream API (vsock.h,
 * "app" mode: the function runtime in guest/fn/): the program gets each
 * received payload in place, in its RX buffer, and gives the buffer back
 * when it is done with it.
 *
 * Flow control (5.10.6.3): each stream advertises vbufalloc=B bytes
 * (default 64 KiB; an app may set its own per stream). A received buffer counts against it until echoed; an
 * echo waits for the host's credit, and a stream whose host reader
 * stalls holds only its own buffers.
 */
#include "vsock.h"

#define VQ_RX 0
#define VQ_TX 1
#define VQ_EV 2
#define NR_VQ 3

#define HOST_CID 2
#define TYPE_STREAM 1
#define OP_REQUEST 1
#define OP_RESPONSE 2
#define OP_RST 3
#define OP_SHUTDOWN 4
#define OP_RW 5
#define OP_CREDIT_UPDATE 6
#define OP_CREDIT_REQUEST 7
#define SHUT_RCV 1u
#define SHUT_SEND 2u

#define RXQ_MAX 256
#define TXQ_SIZE 256
#define EVQ_SIZE 4
#define MAX_CONNS 64
#define CTRL_SLOTS 64
#define TX_RESERVE 4    /* TX descriptors / control slots an RX packet may need */
#define DEFAULT_PORT 5000
#define DEFAULT_BUF 16384
#define DEFAULT_NBUFS 128
#define DEFAULT_BUF_ALLOC 65536
#define CLIENT_CHUNK 16384      /* a multiple of the pattern's 256 */
#define CLIENT_LOCAL_PORT 40000

struct vsock_hdr {
	uint64_t src_cid;
	uint64_t dst_cid;
	uint32_t src_port;
	uint32_t dst_port;
	uint32_t len;
	uint16_t type;
	uint16_t op;
	uint32_t flags;
	uint32_t buf_alloc;
	uint32_t fwd_cnt;
} __attribute__((packed));

#define HDR_SIZE ((uint32_t)sizeof(struct vsock_hdr))

/* What a TX descriptor carries, to know what to recycle on completion. */
#define TXO_FREE 0
#define TXO_ECHO 1      /* an RX buffer being echoed: re-post it to RX */
#define TXO_CTRL 2      /* a control header slot */
#define TXO_DATA 3      /* client: header slot + pattern (2 descriptors) */
#define TXO_LINK 4      /* second descriptor of a TXO_DATA chain */

struct conn {
	int used;
	uint32_t local_port;   /* ours */
	uint32_t peer_port;    /* the host's */
	int established;
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	uint32_t fwd_cnt;      /* bytes we consumed (echoed or checked) */
	uint32_t peer_shut;
	int shut_sent;
	int credit_asked;
	uint64_t rx_bytes;
	uint32_t buf_alloc;    /* what we advertise (vs.buf_alloc unless the app sets it) */
	void *app_data;
	/* RX buffers waiting for the host's credit, in order */
	uint16_t pend[RXQ_MAX];
	uint32_t pend_head, pend_len;
};

struct vs {
	struct virtio_dev *d;
	struct virtq q[NR_VQ];
	uint64_t cid;
	uint8_t *bufs;
	uint32_t bufsz, nbufs;
	uint32_t buf_alloc;
	uint32_t buf_len[RXQ_MAX];        /* payload length of a held RX buffer */
	struct vsock_hdr *ctrl;           /* CTRL_SLOTS headers */
	uint8_t ctrl_free[CTRL_SLOTS];    /* free control slots, a stack */
	uint32_t nr_ctrl_free;
	uint8_t tx_owner[TXQ_SIZE];
	uint16_t tx_ref[TXQ_SIZE];        /* RX buffer or ctrl slot */
	uint16_t tx_free[TXQ_SIZE];
	uint32_t nr_tx_free;
	uint32_t ev_buf[EVQ_SIZE];
	struct conn conns[MAX_CONNS];
	/* Guest CPL0 code is emulated here (each instruction ~1-3 us), so
	 * no per-packet scan of the whole table: only slots below conn_hi
	 * are ever used, and the last stream found is tried first. */
	uint32_t conn_hi;
	struct conn *conn_last;
	uint32_t echo_inflight;           /* TXO_ECHO packets not yet used */
	int tx_wanted;                    /* vsock_want_tx_done(), or draining */
	int tx_armed;                     /* TX's used_event asks for interrupts */
	uint32_t to_kick;                 /* queues with unpublished avail entries */
	const struct vsock_app *app;      /* app mode */
	uint32_t app_next_port;
	uint32_t data_inflight;           /* TXO_DATA packets not yet used */
	int event_idx;                    /* VIRTIO_F_RING_EVENT_IDX negotiated */
	/* scenario state */
	int echo;
	uint32_t listen_port;
	uint32_t closed, opened, refused, bad;
	uint64_t echoed;
	uint32_t resets;
	uint8_t *pattern;
	uint32_t reply[2];
	uint32_t reply_len;
};

static struct vs vs;

/* ---- queues ---------------------------------------------------------------- */

static int vq_setup(struct virtio_dev *d, unsigned idx, uint32_t want)
{
	struct virtq *vq = &vs.q[idx];
	uint32_t max, size;
	uint8_t *mem;

	virtio_write32(d, VIRTIO_MMIO_QUEUE_SEL, idx);
	max = virtio_read32(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (!max)
		return -ENODEV;
	size = want < max ? want : max;
	while (size & (size - 1))
		size &= size - 1;
	if (size > VIRTQ_MAX_SIZE)
		return -EINVAL;
	mem = dma_alloc(0x2000, 4096);
	if (!mem)
		return -ENOMEM;
	memset(mem, 0, 0x2000);
	virtq_place(d, vq, mem, size);
	virtio_write32(d, VIRTIO_MMIO_QUEUE_READY, 1);
	return 0;
}

static void vq_add(unsigned idx, uint16_t head)
{
	struct virtq *vq = &vs.q[idx];

	vq->avail->ring[vq->avail_shadow & (vq->size - 1)] = head;
	vq->avail_shadow++;
	vs.to_kick |= 1u << idx;
}

static void vq_kick_new(unsigned idx)
{
	struct virtq *vq = &vs.q[idx];
	uint16_t old = vq->avail_kicked;

	cpu_barrier();
	vq->avail->idx = vq->avail_shadow;
	vq->avail_kicked = vq->avail_shadow;
	cpu_mfence();
	/* With EVENT_IDX the device says up to where it is already looking:
	 * no notification (an exit) unless the new entries pass that point. */
	if (vs.event_idx ? (uint16_t)(vq->avail_kicked - *vq->avail_event - 1) <
				   (uint16_t)(vq->avail_kicked - old)
			 : !(vq->used->flags & VIRTQ_USED_F_NO_NOTIFY))
		virtio_write32(vs.d, VIRTIO_MMIO_QUEUE_NOTIFY, idx);
}

/* Publishes what vq_add() queued since the last time: most polls and
 * waits queue nothing, and then this is one test of one word. */
static inline void vq_kick_all(void)
{
	uint32_t m = vs.to_kick;

	if (!m)
		return;
	vs.to_kick = 0;
	if (m & (1u << VQ_TX))
		vq_kick_new(VQ_TX);
	if (m & (1u << VQ_RX))
		vq_kick_new(VQ_RX);
	if (m & (1u << VQ_EV))
		vq_kick_new(VQ_EV);
}

static int vq_get(unsigned idx, uint32_t *id, uint32_t *len)
{
	struct virtq *vq = &vs.q[idx];
	volatile struct virtq_used_elem *e;

	if (vq->used->idx == vq->used_last)
		return 0;
	cpu_barrier();
	e = &vq->used->ring[vq->used_last & (vq->size - 1)];
	*id = e->id;
	*len = e->len;
	vq->used_last++;
	return 1;
}

static int vq_pending(void)
{
	return vs.q[VQ_RX].used->idx != vs.q[VQ_RX].used_last ||
	       vs.q[VQ_EV].used->idx != vs.q[VQ_EV].used_last ||
	       vs.q[VQ_TX].used->idx != vs.q[VQ_TX].used_last;
}

/* Whether anything waits for a TX completion: the echo for its RX
 * buffers, the client for its pattern, an app that said so
 * (vsock_want_tx_done), a drain, or slots and descriptors running low.
 * Otherwise used TX entries are reaped at the next poll, with no
 * interrupt (each one costs ~100 emulated instructions and exits here). */
static int tx_waited_on(void)
{
	return vs.echo_inflight || (vs.data_inflight && !vs.app) || vs.tx_wanted ||
	       vs.nr_ctrl_free < CTRL_SLOTS / 2 || vs.nr_tx_free < TXQ_SIZE / 2;
}

/* EVENT_IDX: while busy the device need not interrupt; before sleeping
 * (or running something long), ask for an interrupt at the very next
 * used entry of RX and events (used_event = the next index we consume:
 * the device interrupts when its used index moves past it, 2.7.10), and
 * of TX only if something waits for it. Otherwise TX's used_event is left
 * one behind what was consumed: the device's used index, never behind
 * ours, has already passed it. */
static void vs_arm_notify(void)
{
	if (vs.event_idx) {
		*vs.q[VQ_RX].used_event = vs.q[VQ_RX].used_last;
		*vs.q[VQ_EV].used_event = vs.q[VQ_EV].used_last;
		/* Once set one behind, TX's needs no rewrite while nothing
		 * waits for TX: the device passes it again only when its used
		 * index wraps (65536 entries later: one needless interrupt,
		 * nothing lost). */
		if (tx_waited_on()) {
			*vs.q[VQ_TX].used_event = vs.q[VQ_TX].used_last;
			vs.tx_armed = 1;
		} else if (vs.tx_armed) {
			*vs.q[VQ_TX].used_event = (uint16_t)(vs.q[VQ_TX].used_last - 1);
			vs.tx_armed = 0;
		}
		cpu_mfence();
	}
}

/* Publishes what was queued, then sleeps until a queue has a used entry
 * (or another interrupt: the test unikernel's 10 ms tick where it runs;
 * the function runtime stops that tick). Arming and the last look run
 * with interrupts off, and sti holds them off until hlt has begun, so an
 * entry used after the look still wakes the hlt. */
static void vs_wait(void)
{
	cpu_cli();
	/* What the caller queued since its last poll. */
	vq_kick_all();
	vs_arm_notify();
	if (!vq_pending())
		cpu_sti_hlt();
	cpu_cli();
}

/*
 * The interrupt when it hits CPL0 code (the only place with interrupts on
 * is a sti;hlt wait): acknowledge it at the device, end it at the LAPIC,
 * return: 9 emulated instructions instead of ~55 through the common stub,
 * idt_handle_exception and irq_dispatch. At CPL3 (a function's handler
 * running) the common path, whose irq hook checks the deadline and moves
 * the streams on. Same acknowledgement as vs_irq below.
 */
uint64_t vs_irq_ack_addr;       /* the device's InterruptACK register */
const void *vs_irq_slow_entry;  /* the common stub for its vector */
void vs_irq_fast(void);
__asm__(".text\n"
	".globl vs_irq_fast\n"
	"vs_irq_fast:\n"
	"	testb $3, 8(%rsp)\n"          /* CS of the interrupted code */
	"	jnz 1f\n"
	"	pushq %rax\n"
	"	movq vs_irq_ack_addr(%rip), %rax\n"
	"	movl $3, (%rax)\n"            /* VRING | CONFIG */
	"	movl $0xfee000b0, %eax\n"     /* LAPIC EOI */
	"	movl $0, (%rax)\n"
	"	popq %rax\n"
	"	iretq\n"
	"1:	jmpq *vs_irq_slow_entry(%rip)\n");

/* The interrupt: acknowledge without reading InterruptStatus first (a
 * read is one more exit to the monitor per interrupt). Both bits: a
 * config change means nothing to this driver, and the rings are looked
 * at after every wake-up anyway. The line must drop (QEMU's is level). */
static void vs_irq(void *arg)
{
	struct virtio_dev *d = arg;

	virtio_write32(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG);
	d->interrupts++;
}

static uint8_t *rx_buf(uint32_t b)
{
	return vs.bufs + (uint64_t)b * vs.bufsz;
}

/* RX descriptor b always names buffer b (rx_desc_init, at start): giving
 * a buffer back is one avail ring entry. */
static void rx_post(uint16_t b)
{
	vq_add(VQ_RX, b);
}

static void rx_desc_init(uint16_t b)
{
	volatile struct virtq_desc *dsc = &vs.q[VQ_RX].desc[b];

	dsc->addr = (uint64_t)(uintptr_t)rx_buf(b);
	dsc->len = vs.bufsz;
	dsc->flags = VIRTQ_DESC_F_WRITE;
	dsc->next = 0;
}

static int tx_alloc(void)
{
	return vs.nr_tx_free ? vs.tx_free[--vs.nr_tx_free] : -1;
}

static void tx_put(uint16_t desc)
{
	vs.tx_owner[desc] = TXO_FREE;
	vs.tx_free[vs.nr_tx_free++] = desc;
}

/* Control header slots: callers check nr_ctrl_free first. */
static int ctrl_alloc(void)
{
	return vs.ctrl_free[--vs.nr_ctrl_free];
}

static void ctrl_put(uint16_t slot)
{
	vs.ctrl_free[vs.nr_ctrl_free++] = (uint8_t)slot;
}

/* ---- packets ------------------------------------------------------------------- */

static void hdr_fill(struct vsock_hdr *h, struct conn *c, uint16_t op, uint32_t len)
{
	h->src_cid = vs.cid;
	h->dst_cid = HOST_CID;
	h->src_port = c->local_port;
	h->dst_port = c->peer_port;
	h->len = len;
	h->type = TYPE_STREAM;
	h->op = op;
	h->flags = 0;
	h->buf_alloc = c->buf_alloc;
	h->fwd_cnt = c->fwd_cnt;
}

/* A header-only packet; 0 or -ENOMEM when no slot/descriptor is free
 * (then it is dropped: the scenarios size the pools so it never is). */
static int send_ctrl_ports(uint32_t src_port, uint32_t dst_port, uint16_t op, uint32_t flags,
			   struct conn *c)
{
	int slot, desc;

	desc = vs.nr_ctrl_free ? tx_alloc() : -1;
	if (desc < 0) {
		serial_printf("vsock: no room for a control packet (op %u)\n", op);
		return -ENOMEM;
	}
	slot = ctrl_alloc();
	struct vsock_hdr *h = &vs.ctrl[slot];
	if (c) {
		hdr_fill(h, c, op, 0);
	} else {
		struct conn tmp = { .local_port = src_port, .peer_port = dst_port,
				    .buf_alloc = vs.buf_alloc };
		hdr_fill(h, &tmp, op, 0);
	}
	h->flags = flags;
	vs.tx_owner[desc] = TXO_CTRL;
	vs.tx_ref[desc] = (uint16_t)slot;
	volatile struct virtq_desc *dsc = &vs.q[VQ_TX].desc[desc];
	dsc->addr = (uint64_t)(uintptr_t)h;
	dsc->len = HDR_SIZE;
	dsc->flags = 0;
	dsc->next = 0;
	vq_add(VQ_TX, (uint16_t)desc);
	return 0;
}

static int send_ctrl(struct conn *c, uint16_t op, uint32_t flags)
{
	return send_ctrl_ports(c->local_port, c->peer_port, op, flags, c);
}

static struct conn *conn_find(uint32_t local, uint32_t peer)
{
	struct conn *c = vs.conn_last;

	if (c && c->used && c->local_port == local && c->peer_port == peer)
		return c;
	for (uint32_t i = 0; i < vs.conn_hi; i++) {
		c = &vs.conns[i];
		if (c->used && c->local_port == local && c->peer_port == peer)
			return vs.conn_last = c;
	}
	return NULL;
}

static struct conn *conn_new(uint32_t local, uint32_t peer)
{
	uint32_t i = 0;

	while (i < vs.conn_hi && vs.conns[i].used)
		i++;
	if (i == MAX_CONNS)
		return NULL;
	if (i == vs.conn_hi)
		vs.conn_hi++;
	struct conn *c = &vs.conns[i];
	/* Up to pend[]: the queue of held buffers needs no clearing. */
	memset(c, 0, __builtin_offsetof(struct conn, pend));
	c->pend_head = c->pend_len = 0;
	c->used = 1;
	c->local_port = local;
	c->peer_port = peer;
	c->buf_alloc = vs.buf_alloc;
	return vs.conn_last = c;
}

static void conn_free(struct conn *c)
{
	c->used = 0;
	while (vs.conn_hi && !vs.conns[vs.conn_hi - 1].used)
		vs.conn_hi--;
}

static uint32_t conn_credit(const struct conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	return in_flight > c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

static void conn_drop(struct conn *c)
{
	if (vs.app && vs.app->closed)
		vs.app->closed((struct vsock_conn *)c);
	while (c->pend_len) {
		rx_post(c->pend[c->pend_head]);
		c->pend_head = (c->pend_head + 1) % RXQ_MAX;
		c->pend_len--;
	}
	conn_free(c);
	vs.closed++;
}

/* Echo what waits while the host has credit for it. */
static void conn_flush(struct conn *c)
{
	while (c->pend_len) {
		uint16_t b = c->pend[c->pend_head];
		uint32_t n = vs.buf_len[b];
		int desc;

		if (n > conn_credit(c)) {
			if (!c->credit_asked) {
				send_ctrl(c, OP_CREDIT_REQUEST, 0);
				c->credit_asked = 1;
			}
			return;
		}
		desc = tx_alloc();
		if (desc < 0)
			return;
		c->fwd_cnt += n;
		c->tx_cnt += n;
		hdr_fill((struct vsock_hdr *)rx_buf(b), c, OP_RW, n);
		vs.tx_owner[desc] = TXO_ECHO;
		vs.tx_ref[desc] = b;
		vs.echo_inflight++;
		volatile struct virtq_desc *dsc = &vs.q[VQ_TX].desc[desc];
		dsc->addr = (uint64_t)(uintptr_t)rx_buf(b);
		dsc->len = HDR_SIZE + n;
		dsc->flags = 0;
		dsc->next = 0;
		vq_add(VQ_TX, (uint16_t)desc);
		vs.echoed += n;
		c->pend_head = (c->pend_head + 1) % RXQ_MAX;
		c->pend_len--;
	}
	/* The host shut its side and everything is echoed: we are done too. */
	if ((c->peer_shut & SHUT_SEND) && !c->shut_sent) {
		send_ctrl(c, OP_SHUTDOWN, SHUT_RCV | SHUT_SEND);
		c->shut_sent = 1;
	}
}

/* The client: received bytes are the host's 8-byte reply. */
static void client_take(struct conn *c, uint16_t b, uint32_t n)
{
	const uint8_t *p = rx_buf(b) + HDR_SIZE;

	for (uint32_t i = 0; i < n && vs.reply_len < sizeof(vs.reply); i++)
		((uint8_t *)vs.reply)[vs.reply_len++] = p[i];
	c->fwd_cnt += n;
	rx_post(b);
}

static void handle_rx(uint16_t b, uint32_t len)
{
	struct vsock_hdr *h = (struct vsock_hdr *)rx_buf(b);
	struct conn *c;

	if (b >= vs.nbufs || len < HDR_SIZE || len > vs.bufsz || h->dst_cid != vs.cid ||
	    h->src_cid != HOST_CID || h->type != TYPE_STREAM || h->len > len - HDR_SIZE) {
		vs.bad++;
		if (b < vs.nbufs)
			rx_post(b);
		return;
	}
	c = conn_find(h->dst_port, h->src_port);
	if (c && h->op != OP_RST) {
		if (h->buf_alloc != c->peer_buf_alloc || h->fwd_cnt != c->peer_fwd_cnt)
			c->credit_asked = 0;
		c->peer_buf_alloc = h->buf_alloc;
		c->peer_fwd_cnt = h->fwd_cnt;
	}
	switch (h->op) {
	case OP_REQUEST:
		if (!c && (vs.echo || vs.app) && h->dst_port == vs.listen_port &&
		    (c = conn_new(h->dst_port, h->src_port))) {
			c->peer_buf_alloc = h->buf_alloc;
			c->peer_fwd_cnt = h->fwd_cnt;
			if (vs.app && !vs.app->accept((struct vsock_conn *)c)) {
				conn_free(c);
				send_ctrl_ports(h->dst_port, h->src_port, OP_RST, 0, NULL);
				rx_post(b);
				return;
			}
			c->established = 1;
			vs.opened++;
			send_ctrl(c, OP_RESPONSE, 0);
		} else {
			send_ctrl_ports(h->dst_port, h->src_port, OP_RST, 0, NULL);
		}
		rx_post(b);
		return;
	case OP_RESPONSE:
		if (c)
			c->established = 1;
		rx_post(b);
		return;
	case OP_RW:
		if (!c || !c->established) {
			send_ctrl_ports(h->dst_port, h->src_port, OP_RST, 0, NULL);
			rx_post(b);
			return;
		}
		c->rx_bytes += h->len;
		if (vs.app && h->len) {
			/* The app owns the buffer until vsock_release(). */
			vs.app->data((struct vsock_conn *)c, b, rx_buf(b) + HDR_SIZE, h->len);
			return;
		}
		if (!vs.echo) {
			client_take(c, b, h->len);
			return;
		}
		if (!h->len) {
			rx_post(b);
			return;
		}
		vs.buf_len[b] = h->len;
		c->pend[(c->pend_head + c->pend_len) % RXQ_MAX] = b;
		c->pend_len++;
		conn_flush(c);
		return;
	case OP_SHUTDOWN:
		if (c) {
			c->peer_shut |= h->flags & (SHUT_RCV | SHUT_SEND);
			if (vs.echo)
				conn_flush(c);
			if (vs.app && vs.app->shutdown)
				vs.app->shutdown((struct vsock_conn *)c);
		}
		rx_post(b);
		return;
	case OP_RST:
		if (c)
			conn_drop(c);
		rx_post(b);
		return;
	case OP_CREDIT_REQUEST:
		if (c)
			send_ctrl(c, OP_CREDIT_UPDATE, 0);
		rx_post(b);
		return;
	case OP_CREDIT_UPDATE:
		rx_post(b);
		if (c && vs.echo)
			conn_flush(c);
		return;
	default:
		vs.bad++;
		rx_post(b);
		return;
	}
}

static void handle_tx_done(uint32_t id)
{
	if (id >= TXQ_SIZE)
		return;
	switch (vs.tx_owner[id]) {
	case TXO_ECHO:
		rx_post(vs.tx_ref[id]);
		vs.echo_inflight--;
		break;
	case TXO_CTRL:
		ctrl_put(vs.tx_ref[id]);
		break;
	case TXO_DATA:
		ctrl_put(vs.tx_ref[id]);
		vs.data_inflight--;
		tx_put(vs.q[VQ_TX].desc[id].next); /* the pattern descriptor */
		break;
	default:
		return;
	}
	tx_put((uint16_t)id);
}

static void handle_event(uint32_t id)
{
	if (id >= EVQ_SIZE)
		return;
	if (vs.ev_buf[id] == 0) {
		/* TRANSPORT_RESET: every stream is gone (5.10.6.6). */
		vs.resets++;
		for (uint32_t i = vs.conn_hi; i--;)
			if (vs.conns[i].used)
				conn_drop(&vs.conns[i]);
		/* Short, no printf, one port exit for the line (not two a
		 * byte): paid by every clone start. */
		serial_write_burst("vsock: reset\n", 13);
	}
	vq_add(VQ_EV, (uint16_t)id);
}

/* One round: everything used, then kicks. Returns whether anything moved.
 * TX completions first (they free what answers need), then events, then
 * RX only while there is room for a control packet in answer: many
 * streams closing at once must not run the slots out (the rest waits for
 * the next round). Events before RX: a transport reset pending (a restored
 * clone's) predates whatever RX holds, so a new stream the host opened
 * since is accepted after the reset, not accepted and then dropped by it
 * (which cost each launcher clone a second handshake: ~4 ms of emulated
 * guest work here). */
static int vs_poll(void)
{
	uint32_t id, len;
	int moved = 0;

	while (vq_get(VQ_TX, &id, &len)) {
		handle_tx_done(id);
		moved = 1;
	}
	while (vq_get(VQ_EV, &id, &len)) {
		handle_event(id);
		moved = 1;
	}
	while (vs.nr_tx_free >= TX_RESERVE && vs.nr_ctrl_free >= TX_RESERVE &&
	       vq_get(VQ_RX, &id, &len)) {
		handle_rx((uint16_t)id, len);
		moved = 1;
	}
	vq_kick_all();
	return moved;
}

/* ---- set-up ---------------------------------------------------------------------- */

static int vs_start(void);

/* Finds the device, reads the tokens, allocates the buffers, starts it. */
static int vs_open(void)
{
	static struct virtio_dev devs[VIRTIO_MAX_DEVICES];
	int n = virtio_discover(devs, VIRTIO_MAX_DEVICES);
	struct virtio_dev *d = NULL;

	for (int i = 0; i < n; i++)
		if (devs[i].device_id == VIRTIO_ID_VSOCK)
			d = &devs[i];
	if (!d) {
		serial_printf("vsock: no virtio-vsock device on the command line\n");
		return -ENODEV;
	}
	vs.d = d;
	vs.bufsz = (uint32_t)cmdline_u64("vbuf=", DEFAULT_BUF);
	vs.nbufs = (uint32_t)cmdline_u64("vnbufs=", DEFAULT_NBUFS);
	vs.buf_alloc = (uint32_t)cmdline_u64("vbufalloc=", DEFAULT_BUF_ALLOC);
	if (vs.bufsz < HDR_SIZE + 256 || vs.bufsz > 65536 + HDR_SIZE || vs.nbufs < 4 ||
	    vs.nbufs > RXQ_MAX || (vs.nbufs & (vs.nbufs - 1))) {
		serial_printf("vsock: vbuf must be 300..65580 and vnbufs a power of 2, 4..256\n");
		return -EINVAL;
	}
	vs.bufs = dma_alloc((size_t)vs.bufsz * vs.nbufs, 4096);
	vs.ctrl = dma_alloc(CTRL_SLOTS * sizeof(struct vsock_hdr), 64);
	vs.pattern = dma_alloc(CLIENT_CHUNK, 4096);
	if (!vs.bufs || !vs.ctrl || !vs.pattern)
		return -ENOMEM;
	return vs_start();
}

/* Device initialisation (3.1.1) with fresh rings, every buffer posted and
 * no stream: at start and again after a reset. */
static int vs_start(void)
{
	struct virtio_dev *d = vs.d;
	uint32_t status;

	if (virtio_reset(d))
		return -ETIMEDOUT;
	memset(vs.conns, 0, sizeof(vs.conns));
	vs.conn_hi = 0;
	vs.conn_last = NULL;
	for (uint32_t i = 0; i < CTRL_SLOTS; i++)
		vs.ctrl_free[i] = (uint8_t)(CTRL_SLOTS - 1 - i);
	vs.nr_ctrl_free = CTRL_SLOTS;
	vs.data_inflight = vs.echo_inflight = 0;
	vs.to_kick = 0;
	vs.tx_armed = 1;   /* fresh rings: used_event 0, i.e. at the next entry */
	memset(vs.tx_owner, 0, sizeof(vs.tx_owner));
	vs.nr_tx_free = 0;
	status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
	virtio_write32(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	virtio_write32(d, VIRTIO_MMIO_STATUS, status);
	virtio_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	if (!(virtio_read32(d, VIRTIO_MMIO_DEVICE_FEATURES) & 1)) {
		serial_printf("vsock: device does not offer VERSION_1\n");
		return -ENODEV;
	}
	virtio_write32(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	vs.event_idx = cmdline_u64("vevent=", 1) &&
		       (virtio_read32(d, VIRTIO_MMIO_DEVICE_FEATURES) &
			VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX));
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES,
		       vs.event_idx ? (uint32_t)VIRTIO_BIT(VIRTIO_F_RING_EVENT_IDX) : 0);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	virtio_write32(d, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	status |= VIRTIO_STATUS_FEATURES_OK;
	virtio_write32(d, VIRTIO_MMIO_STATUS, status);
	if (!(virtio_read32(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
		serial_printf("vsock: features refused\n");
		return -EIO;
	}
	if (vq_setup(d, VQ_RX, vs.nbufs) || vq_setup(d, VQ_TX, TXQ_SIZE) ||
	    vq_setup(d, VQ_EV, EVQ_SIZE) || vs.q[VQ_RX].size != vs.nbufs ||
	    vs.q[VQ_TX].size != TXQ_SIZE) {
		serial_printf("vsock: queue set-up failed\n");
		return -EIO;
	}
	vs.cid = virtio_config64(d, 0);
	for (uint32_t i = 0; i < TXQ_SIZE; i++)
		tx_put((uint16_t)(TXQ_SIZE - 1 - i));
	for (uint32_t b = 0; b < vs.nbufs; b++) {
		rx_desc_init((uint16_t)b);
		rx_post((uint16_t)b);
	}
	for (uint32_t e = 0; e < EVQ_SIZE; e++) {
		volatile struct virtq_desc *dsc = &vs.q[VQ_EV].desc[e];
		vs.ev_buf[e] = 0xffffffffu;
		dsc->addr = (uint64_t)(uintptr_t)&vs.ev_buf[e];
		dsc->len = sizeof(vs.ev_buf[e]);
		dsc->flags = VIRTQ_DESC_F_WRITE;
		vq_add(VQ_EV, (uint16_t)e);
	}
	irq_init();
	if (irq_route(d->irq, d->vector, vs_irq, d))
		return -EINVAL;
	vs_irq_ack_addr = d->base + VIRTIO_MMIO_INTERRUPT_ACK;
	vs_irq_slow_entry = idt_irq_stub(d->vector);
	idt_set_irq_entry(d->vector, vs_irq_fast);
	d->irq_mode = 1;
	virtio_write32(d, VIRTIO_MMIO_STATUS, status | VIRTIO_STATUS_DRIVER_OK);
	vq_kick_all();
	serial_printf("vsock: 0x%lx irq %u cid %lu, %u rx buffers of %u bytes, buf_alloc %u%s\n",
		      (unsigned long)d->base, d->irq, (unsigned long)vs.cid, vs.nbufs, vs.bufsz,
		      vs.buf_alloc, vs.event_idx ? ", event idx" : "");
	return 0;
}

/* ---- scenarios --------------------------------------------------------------------- */

static int vsock_echo(void)
{
	uint32_t want = (uint32_t)cmdline_u64("vconns=", 1);
	int reset = cmdline_u64("vreset=", 0) != 0;

	vs.echo = 1;
	vs.listen_port = (uint32_t)cmdline_u64("vport=", DEFAULT_PORT);
	if (vs_open())
		return GUEST_EXIT_FAIL;
	serial_printf("vsock-echo: listening on port %u until %u streams closed\n",
		      vs.listen_port, want);
	while (vs.closed < want) {
		if (!vs_poll())
			vs_wait();
		/* vreset=1: once a stream has echoed something, reset the
		 * device under it (the monitor must drop every stream and close
		 * their host sockets) and start again; streams closed by the
		 * reset do not count. */
		if (reset && vs.echoed) {
			reset = 0;
			/* Let the device take the echo first: a reset drops
			 * the TX packets it has not used yet, and the host
			 * must read the echo before its stream closes. */
			vs.tx_wanted = 1;
			for (int w = 0; w < 1000 && vs.nr_tx_free < TXQ_SIZE; w++)
				if (!vs_poll())
					vs_wait();
			vs.tx_wanted = 0;
			if (vs_start())
				return GUEST_EXIT_FAIL;
			serial_printf("vsock-echo: device reset with streams open, restarted\n");
		}
	}
	serial_printf("vsock-echo: %u streams opened, %u closed, %lu bytes echoed, "
		      "%u bad packets\n",
		      vs.opened, vs.closed, (unsigned long)vs.echoed, vs.bad);
	serial_printf("TEST PASS vsock-echo\n");
	return GUEST_EXIT_PASS;
}

static uint32_t pattern_sum(uint64_t n)
{
	/* sum of (i & 0xff) for i < n: 32640 per full period of 256 */
	uint32_t s = (uint32_t)((n / 256) * 32640u);

	for (uint32_t i = 0; i < (uint32_t)(n % 256); i++)
		s += i;
	return s;
}

/* Sends up to the host's credit, one packet of at most chunk bytes:
 * header slot plus the data (which must stay put until the packet is
 * used). Returns bytes queued. */
static uint32_t send_data(struct conn *c, const void *data, uint64_t left, uint32_t chunk)
{
	uint32_t n = conn_credit(c);
	int slot, d0, d1;

	if (n > left)
		n = (uint32_t)left;
	if (n > chunk)
		n = chunk;
	if (!n)
		return 0;
	if (!vs.nr_ctrl_free || vs.nr_tx_free < 2)
		return 0;
	slot = ctrl_alloc();
	d0 = tx_alloc();
	d1 = tx_alloc();
	hdr_fill(&vs.ctrl[slot], c, OP_RW, n);
	vs.tx_owner[d0] = TXO_DATA;
	vs.tx_ref[d0] = (uint16_t)slot;
	vs.tx_owner[d1] = TXO_LINK;
	volatile struct virtq_desc *a = &vs.q[VQ_TX].desc[d0], *b = &vs.q[VQ_TX].desc[d1];
	a->addr = (uint64_t)(uintptr_t)&vs.ctrl[slot];
	a->len = HDR_SIZE;
	a->flags = VIRTQ_DESC_F_NEXT;
	a->next = (uint16_t)d1;
	b->addr = (uint64_t)(uintptr_t)data;
	b->len = n;
	b->flags = 0;
	b->next = 0;
	vq_add(VQ_TX, (uint16_t)d0);
	vs.data_inflight++;
	c->tx_cnt += n;
	return n;
}

/* The client's packets: the pattern, a chunk at a time. */
static uint32_t client_send(struct conn *c, uint64_t left)
{
	return send_data(c, vs.pattern, left, CLIENT_CHUNK);
}

static int vsock_client(void)
{
	uint32_t port = (uint32_t)cmdline_u64("vport=", DEFAULT_PORT);
	uint64_t total = cmdline_u64("vbytes=", 65536), sent = 0;
	const char *val;
	size_t vlen;
	int expect_refused = cmdline_find("vexpect=", &val, &vlen) && vlen == 7 &&
			     memcmp(val, "refused", 7) == 0;
	uint64_t start;
	struct conn *c;

	if (vs_open())
		return GUEST_EXIT_FAIL;
	for (uint32_t i = 0; i < CLIENT_CHUNK; i++)
		vs.pattern[i] = (uint8_t)i;   /* once; every chunk starts at a multiple of 256 */
	c = conn_new(CLIENT_LOCAL_PORT, port);
	send_ctrl(c, OP_REQUEST, 0);
	serial_printf("vsock-client: connecting to host port %u\n", port);
	start = cpu_rdtsc();
	while (c->used && !c->established) {
		if (!vs_poll())
			vs_wait();
		if (cpu_rdtsc() - start > VIRTIO_WAIT_TSC) {
			serial_printf("TEST FAIL vsock-client: no answer to the connection request\n");
			return GUEST_EXIT_FAIL;
		}
	}
	if (!c->used) {
		serial_printf("vsock-client: connection refused (RST)\n");
		if (expect_refused) {
			serial_printf("TEST PASS vsock-client\n");
			return GUEST_EXIT_PASS;
		}
		serial_printf("TEST FAIL vsock-client: refused\n");
		return GUEST_EXIT_FAIL;
	}
	if (expect_refused) {
		serial_printf("TEST FAIL vsock-client: connected, expected a refusal\n");
		return GUEST_EXIT_FAIL;
	}
	serial_printf("vsock-client: connected, sending %lu bytes\n", (unsigned long)total);
	while (c->used && (sent < total || vs.reply_len < sizeof(vs.reply))) {
		uint32_t n = sent < total ? client_send(c, total - sent) : 0;
		sent += n;
		if (sent == total && !c->shut_sent) {
			send_ctrl(c, OP_SHUTDOWN, SHUT_SEND);
			c->shut_sent = 1;
		}
		if (n == 0 && !vs_poll())
			vs_wait();
		else if (n)
			vs_poll();
	}
	/* The host closes after its reply: wait for the RST. */
	while (c->used) {
		if (!vs_poll())
			vs_wait();
	}
	serial_printf("vsock-client: sent %lu, host says it got %u bytes, sum %u (expected %u)\n",
		      (unsigned long)sent, vs.reply[0], vs.reply[1], pattern_sum(total));
	if (vs.reply_len < sizeof(vs.reply) || vs.reply[0] != (uint32_t)total ||
	    vs.reply[1] != pattern_sum(total)) {
		serial_printf("TEST FAIL vsock-client: wrong reply\n");
		return GUEST_EXIT_FAIL;
	}
	serial_printf("TEST PASS vsock-client\n");
	return GUEST_EXIT_PASS;
}

int vsock_test_run(const char *name, size_t len, int *code)
{
	if (len == 10 && memcmp(name, "vsock-echo", 10) == 0) {
		*code = vsock_echo();
		return 1;
	}
	if (len == 12 && memcmp(name, "vsock-client", 12) == 0) {
		*code = vsock_client();
		return 1;
	}
	return 0;
}

/* ---- the stream API (vsock.h) ------------------------------------------------------- */

#define APP_FIRST_LOCAL_PORT 50000
#define APP_CHUNK 65536         /* the device's largest packet payload */

static struct conn *conn_of(struct vsock_conn *c)
{
	return (struct conn *)c;
}

int vsock_app_open(const struct vsock_app *app, uint32_t listen_port)
{
	vs.app = app;
	vs.listen_port = listen_port;
	vs.app_next_port = APP_FIRST_LOCAL_PORT;
	return vs_open();
}

int vsock_poll(void)
{
	return vs_poll();
}

void vsock_wait(void)
{
	vs_wait();
}

void vsock_arm_notify(void)
{
	vs_arm_notify();
}

struct vsock_conn *vsock_connect(uint32_t port)
{
	struct conn *c = conn_new(vs.app_next_port++, port);

	if (!c)
		return NULL;
	if (send_ctrl(c, OP_REQUEST, 0)) {
		conn_free(c);
		return NULL;
	}
	return (struct vsock_conn *)c;
}

int vsock_established(struct vsock_conn *c)
{
	return conn_of(c)->established;
}

uint32_t vsock_peer_shut(struct vsock_conn *c)
{
	return conn_of(c)->peer_shut;
}

int vsock_all_acked(struct vsock_conn *vc)
{
	const struct conn *c = conn_of(vc);

	return c->tx_cnt == c->peer_fwd_cnt;
}

uint32_t vsock_send(struct vsock_conn *vc, const void *data, uint32_t len)
{
	struct conn *c = conn_of(vc);
	uint32_t done = 0, n;

	while (done < len &&
	       (n = send_data(c, (const uint8_t *)data + done, len - done, APP_CHUNK)))
		done += n;
	if (done < len && !conn_credit(c) && !c->credit_asked) {
		send_ctrl(c, OP_CREDIT_REQUEST, 0);
		c->credit_asked = 1;
	}
	return done;
}

uint32_t vsock_tx_inflight(void)
{
	return vs.data_inflight;
}

void vsock_want_tx_done(int on)
{
	vs.tx_wanted = on;
}

void vsock_release(struct vsock_conn *vc, uint16_t buf, uint32_t len)
{
	if (vc)
		conn_of(vc)->fwd_cnt += len;
	rx_post(buf);
}

void vsock_set_buf_alloc(struct vsock_conn *vc, uint32_t buf_alloc, int tell)
{
	struct conn *c = conn_of(vc);

	c->buf_alloc = buf_alloc;
	if (tell)
		send_ctrl(c, OP_CREDIT_UPDATE, 0);
}

void vsock_credit_update(struct vsock_conn *vc)
{
	send_ctrl(conn_of(vc), OP_CREDIT_UPDATE, 0);
}

void vsock_shutdown(struct vsock_conn *vc)
{
	struct conn *c = conn_of(vc);

	if (!c->shut_sent) {
		send_ctrl(c, OP_SHUTDOWN, SHUT_RCV | SHUT_SEND);
		c->shut_sent = 1;
	}
}

void vsock_reset(struct vsock_conn *vc)
{
	struct conn *c = conn_of(vc);

	send_ctrl(c, OP_RST, 0);
	conn_drop(c);
}

void vsock_set_app_data(struct vsock_conn *c, void *data)
{
	conn_of(c)->app_data = data;
}

void *vsock_app_data(struct vsock_conn *c)
{
	return conn_of(c)->app_data;
}

uint32_t vsock_transport_resets(void)
{
	return vs.resets;
}
