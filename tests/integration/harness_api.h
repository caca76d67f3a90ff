/* Integration-test helpers for mote's HTTP API socket: start a monitor and
 * wait until its socket accepts, send requests with a real client (curl
 * --unix-socket) or as raw HTTP/1.1. Header-only, like harness.h; include
 * it after <cmocka.h>. */
#ifndef MOTE_TESTS_HARNESS_API_H
#define MOTE_TESTS_HARNESS_API_H

#include "tests/integration/harness_uds.h"

/* Starts argv (a monitor with --api-sock sock) and returns once sock
 * accepts connections; a monitor that exits first, or a socket that does
 * not accept within 10 s, fails the test with what the monitor printed. */
static inline void harness_spawn_api(struct harness_proc *p, char *const argv[], const char *sock)
{
	double end;

	unlink(sock);
	harness_spawn(p, argv);
	end = harness_now_ms() + 10e3;
	for (;;) {
		int fd = harness_uds_connect(sock);
		if (fd >= 0) {
			close(fd);
			return;
		}
		if (harness_now_ms() > end || !harness_proc_alive(p)) {
			struct run_result r = harness_proc_finish(p, 1);
			harness_dump(&r);
			fail_msg("the API socket %s never accepted", sock);
		}
		usleep(2000);
	}
}

/* One request with curl over the unix socket sock. body: JSON text,
 * "@file" for a file, or NULL. Returns the HTTP status (0 if curl failed)
 * and the response body in out (NUL-terminated, at most cap - 1 bytes). */
static inline int harness_curl(const char *sock, const char *method, const char *path,
			       const char *body, char *out, size_t cap)
{
	char url[256], *buf = NULL, *nl;
	size_t len = 0;
	int po[2], status = 0;

	snprintf(url, sizeof(url), "http://localhost%s", path);
	if (pipe2(po, O_CLOEXEC)) {
		perror("pipe");
		exit(2);
	}
	pid_t pid = fork();
	if (pid == 0) {
		const char *argv[20] = { "curl", "-s", "-S", "--max-time", "60", "--unix-socket",
					 sock, "-X", method, "-o", "-", "-w", "\n%{http_code}" };
		int n = 13;
		if (body) {
			argv[n++] = "-H";
			argv[n++] = "Content-Type: application/json";
			argv[n++] = "--data-binary";
			argv[n++] = body;
		}
		argv[n++] = url;
		argv[n] = NULL;
		dup2(po[1], 1);
		execvp("curl", (char *const *)argv);
		fprintf(stderr, "exec curl: %s (scripts/install-deps.sh installs it)\n",
			strerror(errno));
		_exit(127);
	}
	close(po[1]);
	/* All of it: the status is the last line, after a body of any size. */
	for (;;) {
		char chunk[4096];
		ssize_t got = read(po[0], chunk, sizeof(chunk));
		if (got <= 0)
			break;
		harness_append(&buf, &len, chunk, (size_t)got);
	}
	close(po[0]);
	waitpid(pid, NULL, 0);
	if (!buf)
		buf = calloc(1, 1);
	nl = strrchr(buf, '\n');
	if (nl) {
		status = atoi(nl + 1);
		*nl = '\0';
	}
	if (cap)
		snprintf(out, cap, "%s", buf);
	free(buf);
	return status;
}

struct harness_reply {
	int status; /* HTTP status, 0 if curl failed */
	char body[16384];
};

static inline struct harness_reply harness_api(const char *sock, const char *method,
					       const char *path, const char *body)
{
	struct harness_reply r;

	r.status = harness_curl(sock, method, path, body, r.body, sizeof(r.body));
	return r;
}

/* Fails the test unless r has status code and (if needle) needle in its body. */
static inline void harness_expect_reply(const struct harness_reply *r, int code,
					const char *needle)
{
	if (r->status != code || (needle && !strstr(r->body, needle)))
		fail_msg("got %d '%s', expected %d with '%s'", r->status, r->body, code,
			 needle ? needle : "");
}

/* Pauses the VM behind sock, writes a full snapshot of it to state and
 * mem (both requests must answer 204) and kills its monitor with SIGKILL,
 * as a crash would; returns what the monitor printed. */
static inline struct run_result harness_snapshot_and_kill(struct harness_proc *p,
							  const char *sock, const char *state,
							  const char *mem)
{
	struct harness_reply r;
	struct run_result out;
	char body[768];

	r = harness_api(sock, "PATCH", "/vm", "{\"state\":\"Paused\"}");
	if (r.status == 204) {
		snprintf(body, sizeof(body), "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}",
			 state, mem);
		r = harness_api(sock, "PUT", "/snapshot/create", body);
	}
	kill(p->pid, SIGKILL);
	out = harness_proc_finish(p, 20);
	if (r.status != 204) {
		harness_dump(&out);
		fail_msg("pause or snapshot/create: %d %s", r.status, r.body);
	}
	return out;
}

/* One raw HTTP/1.1 request (Connection: close) over the API socket, each
 * read waiting at most 30 s; returns the status (0 on error) and the body
 * in *body (malloc'd, NUL-terminated, even on error). */
static inline int harness_http(const char *sock, const char *method, const char *path,
			       const char *json, char **body)
{
	const size_t cap = 1 << 20;
	char req[1024], *buf = calloc(1, cap), *b;
	size_t len = 0;
	int fd = harness_uds_connect(sock), status = 0;

	*body = buf;
	if (fd < 0)
		return 0;
	int n = snprintf(req, sizeof(req),
			 "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 method, path, json ? strlen(json) : 0, json ? json : "");
	if (n < 0 || (size_t)n >= sizeof(req) || !harness_write_full(fd, req, (size_t)n)) {
		close(fd);
		return 0;
	}
	while (len + 1 < cap) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 30000) != 1)
			break;
		ssize_t got = read(fd, buf + len, cap - 1 - len);
		if (got <= 0)
			break;
		len += (size_t)got;
	}
	close(fd);
	buf[len] = '\0';
	sscanf(buf, "HTTP/1.1 %d", &status);
	b = strstr(buf, "\r\n\r\n");
	if (b)
		memmove(buf, b + 4, strlen(b + 4) + 1);
	return status;
}

#endif
