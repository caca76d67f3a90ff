#include "vmm/console.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/log.h"

struct console {
	struct vm *vm;
	struct event_loop *loop;
	int in_fd;
	int out_fd;
	int room_efd;             /* serial FIFO has room again */
	bool in_paused;
	bool in_eof;
	uint8_t pending[SERIAL_FIFO_SIZE];
	unsigned pending_len;
};

static struct console console;
static struct termios saved_termios;
static bool termios_saved;

static void console_output(void *opaque, uint8_t byte)
{
	struct console *c = opaque;

	/* A closed or full stdout must never stall or kill the guest's vCPU
	 * for long; drop the byte on error. */
	while (write(c->out_fd, &byte, 1) < 0 && errno == EINTR)
		;
}

static void console_irq(void *opaque)
{
	struct console *c = opaque;

	irq_line_raise(&c->vm->serial_irq);
}

static void console_rx_room(void *opaque)
{
	struct console *c = opaque;
	uint64_t one = 1;

	if (write(c->room_efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("console eventfd: %s", strerror(errno));
}

static const struct serial_ops console_serial_ops = {
	.output = console_output,
	.irq = console_irq,
	.rx_room = console_rx_room,
};

static void console_on_input(struct event_loop *loop, int fd, uint32_t events, void *opaque);

/* Feeds held-back input; pauses stdin while the guest's FIFO is full. */
static void console_flush_pending(struct console *c)
{
	unsigned n = serial_rx_push(&c->vm->serial, c->pending, c->pending_len);

	memmove(c->pending, c->pending + n, c->pending_len - n);
	c->pending_len -= n;
	bool pause = c->pending_len > 0;
	if (pause == c->in_paused || c->in_eof)
		return;
	/* Out of epoll entirely while paused: a hung-up stdin would
	 * otherwise report EPOLLHUP in a busy loop. */
	if (pause)
		loop_remove(c->loop, c->in_fd);
	else
		loop_add(c->loop, c->in_fd, EPOLLIN, console_on_input, c);
	c->in_paused = pause;
}

static void console_on_input(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	struct console *c = opaque;
	ssize_t n;

	(void)events;
	n = read(fd, c->pending + c->pending_len, sizeof(c->pending) - c->pending_len);
	if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
		/* EOF: the guest gets what is pending and then no more input. */
		loop_remove(loop, fd);
		c->in_eof = true;
		return;
	}
	if (n > 0) {
		c->pending_len += (unsigned)n;
		console_flush_pending(c);
	}
}

static void console_on_room(struct event_loop *loop, int fd, uint32_t events, void *opaque)
{
	uint64_t v;

	(void)loop;
	(void)events;
	if (read(fd, &v, sizeof(v)) < 0)
		return;
	console_flush_pending(opaque);
}

void console_restore(void)
{
	if (termios_saved)
		tcsetattr(console.in_fd, TCSANOW, &saved_termios);
	termios_saved = false;
}

int console_init(struct vm *vm, struct event_loop *loop, int in_fd, int out_fd)
{
	struct console *c = &console;
	int ret;

	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->loop = loop;
	c->in_fd = in_fd;
	c->out_fd = out_fd;
	serial_init(&vm->serial, &console_serial_ops, c);

	c->room_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->room_efd < 0)
		return -errno;
	ret = loop_add(loop, c->room_efd, EPOLLIN, console_on_room, c);
	if (ret)
		return ret;

	if (isatty(in_fd) && tcgetattr(in_fd, &saved_termios) == 0) {
		struct termios raw = saved_termios;

		/* Keys go to the guest as typed; Ctrl-C included. Output
		 * processing stays on so the host terminal renders normally. */
		raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG | IEXTEN);
		raw.c_iflag &= ~(tcflag_t)(IXON | ICRNL | INLCR | IGNCR);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		if (tcsetattr(in_fd, TCSANOW, &raw) == 0) {
			termios_saved = true;
			atexit(console_restore);
		}
	}
	/* epoll refuses regular files (stdin redirected from a file); the
	 * guest then has no input, which is what a batch run wants. */
	ret = loop_add(loop, in_fd, EPOLLIN, console_on_input, c);
	if (ret == -EPERM)
		ret = 0;
	return ret;
}
