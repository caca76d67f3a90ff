/* vsock-tool: a tiny static AF_VSOCK tool for mote's Linux initramfs
 * (x86-64 Linux, raw syscalls, no libc: a few KiB in the image).
 *
 *   vsock-tool echo PORT        listen on PORT, echo every stream back
 *                               (one stream at a time, forever)
 *   vsock-tool cat CID PORT     connect to CID:PORT (2 = the host), copy
 *                               stdin to the stream and the stream to
 *                               stdout until both ends are done
 *
 * With mote: `vsock-tool echo 5000` in the guest, then on the host
 * `printf 'CONNECT 5000\nhi\n' | socat - UNIX-CONNECT:<uds_path>`; and
 * `echo hi | vsock-tool cat 2 6000` reaches a program listening on
 * `<uds_path>_6000`.
 *
 * Build: gcc -Os -ffreestanding -static -nostdlib -fno-stack-protector
 *        -fno-pie -no-pie -o vsock-tool vsock-tool.c
 * (guest/linux/build-initramfs.sh does, into /bin/vsock-tool). */
#include <stddef.h>
#include <stdint.h>

#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_poll 7
#define SYS_socket 41
#define SYS_connect 42
#define SYS_accept 43
#define SYS_shutdown 48
#define SYS_bind 49
#define SYS_listen 50
#define SYS_exit 60

#define AF_VSOCK 40
#define SOCK_STREAM 1
#define SHUT_WR 1
#define POLLIN 1
#define POLLHUP 0x10
#define VMADDR_CID_ANY 0xffffffffu

struct sockaddr_vm {
	uint16_t svm_family;
	uint16_t svm_reserved1;
	uint32_t svm_port;
	uint32_t svm_cid;
	uint8_t svm_zero[4];
};

struct pollfd {
	int fd;
	short events, revents;
};

static long sys(long n, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static size_t slen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

static void say(const char *s)
{
	sys(SYS_write, 2, (long)s, (long)slen(s));
}

static __attribute__((noreturn)) void quit(int code)
{
	sys(SYS_exit, code, 0, 0);
	__builtin_unreachable();
}

static __attribute__((noreturn)) void fail(const char *what)
{
	say("vsock-tool: ");
	say(what);
	say(" failed\n");
	quit(1);
}

static uint32_t num(const char *s)
{
	uint64_t v = 0;

	if (!*s)
		fail("parsing a number");
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || (v = v * 10 + (uint64_t)(*s - '0')) > 0xffffffffu)
			fail("parsing a number");
	}
	return (uint32_t)v;
}

static int write_all(int fd, const char *p, long n)
{
	while (n > 0) {
		long w = sys(SYS_write, fd, (long)p, n);
		if (w <= 0)
			return -1;
		p += w;
		n -= w;
	}
	return 0;
}

static char buf[65536];

static void echo(uint32_t port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_port = port,
				  .svm_cid = VMADDR_CID_ANY };
	long l = sys(SYS_socket, AF_VSOCK, SOCK_STREAM, 0);

	if (l < 0 || sys(SYS_bind, l, (long)&sa, sizeof(sa)) < 0 || sys(SYS_listen, l, 16, 0) < 0)
		fail("listening");
	say("vsock-tool: echoing on port\n");
	for (;;) {
		long c = sys(SYS_accept, l, 0, 0);
		long n;

		if (c < 0)
			continue;
		while ((n = sys(SYS_read, c, (long)buf, sizeof(buf))) > 0)
			if (write_all((int)c, buf, n))
				break;
		sys(SYS_close, c, 0, 0);
	}
}

static void cat(uint32_t cid, uint32_t port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = cid };
	long s = sys(SYS_socket, AF_VSOCK, SOCK_STREAM, 0);
	struct pollfd p[2] = { { 0, POLLIN, 0 }, { 0, POLLIN, 0 } };
	int in_open = 1;

	if (s < 0 || sys(SYS_connect, s, (long)&sa, sizeof(sa)) < 0)
		fail("connecting");
	p[1].fd = (int)s;
	for (;;) {
		p[0].fd = in_open ? 0 : -1;
		if (sys(SYS_poll, (long)p, 2, -1) < 0)
			fail("poll");
		if (p[0].revents & (POLLIN | POLLHUP)) {
			long n = sys(SYS_read, 0, (long)buf, sizeof(buf));
			if (n <= 0) {
				in_open = 0;
				sys(SYS_shutdown, s, SHUT_WR, 0);
			} else if (write_all((int)s, buf, n)) {
				fail("sending");
			}
		}
		if (p[1].revents & (POLLIN | POLLHUP)) {
			long n = sys(SYS_read, s, (long)buf, sizeof(buf));
			if (n <= 0)
				quit(0);
			if (write_all(1, buf, n))
				fail("writing stdout");
		}
	}
}

static int streq(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return *a == *b;
}

__attribute__((used)) static void tool_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);

	if (argc == 3 && streq(argv[1], "echo"))
		echo(num(argv[2]));
	if (argc == 4 && streq(argv[1], "cat"))
		cat(num(argv[2]), num(argv[3]));
	say("usage: vsock-tool echo PORT | vsock-tool cat CID PORT\n");
	quit(2);
}

/* The kernel enters with argc at (%rsp); keep the stack 16-byte aligned. */
__asm__(".globl _start\n_start:\n\tmov %rsp, %rdi\n\tand $-16, %rsp\n\tcall tool_main\n\thlt\n");
