/* Scraping a mote VM's GET /demand over its API socket; see agent.h. */
#include "agent/agent.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#define HTTP_MAX (1 << 20)
#define HTTP_TIMEOUT_MS 2000

static double num(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);

	return json_is_number(v) ? json_number_value(v) : 0;
}

static void ratios(json_t *o, struct agent_ratios *r)
{
	r->usage = num(o, "usage");
	r->demand = num(o, "demand");
	r->ready = num(o, "ready");
}

int agent_parse_demand(const char *text, struct agent_vm *vm, char *err, size_t errlen)
{
	json_error_t je;
	json_t *o = json_loads(text, 0, &je);

	if (!o) {
		snprintf(err, errlen, "not JSON: %s (line %d)", je.text, je.line);
		return -EINVAL;
	}
	json_t *v = json_object_get(o, "vm"), *vcpus = json_object_get(o, "vcpus");
	if (!json_is_object(v) || !json_is_array(vcpus) ||
	    !json_is_object(json_object_get(v, "window"))) {
		snprintf(err, errlen, "no vm.window or vcpus in the /demand answer");
		json_decref(o);
		return -EINVAL;
	}
	vm->pid = (pid_t)num(o, "pid");
	vm->period_ms = num(o, "period_ms");
	ratios(json_object_get(v, "window"), &vm->window);
	ratios(json_object_get(v, "ewma"), &vm->ewma);
	size_t n = json_array_size(vcpus);
	vm->nr_vcpus = n > AGENT_MAX_VCPUS ? AGENT_MAX_VCPUS : (unsigned)n;
	for (unsigned i = 0; i < vm->nr_vcpus; i++) {
		json_t *c = json_array_get(vcpus, i);
		ratios(json_object_get(c, "window"), &vm->vcpu[i]);
		json_t *kvm = json_object_get(c, "kvm");
		const char *key;
		json_t *val;
		unsigned k = 0;
		json_object_foreach(kvm, key, val) {
			if (k == AGENT_MAX_EXITS || !json_is_integer(val))
				continue;
			snprintf(vm->exits[i][k].name, sizeof(vm->exits[i][k].name), "%s", key);
			vm->exits[i][k++].value = (uint64_t)json_integer_value(val);
		}
		vm->nr_exits[i] = k;
	}
	json_t *mem = json_object_get(o, "memory");
	vm->guest_bytes = (uint64_t)num(mem, "guest_bytes");
	vm->resident_bytes = (uint64_t)num(mem, "resident_bytes");
	vm->has_working_set = json_is_number(json_object_get(mem, "working_set_bytes"));
	vm->working_set_bytes = (uint64_t)num(mem, "working_set_bytes");
	json_t *io = json_object_get(o, "io");
	vm->nr_io = 0;
	for (size_t i = 0; i < json_array_size(io) && vm->nr_io < AGENT_MAX_IO; i++) {
		json_t *d = json_array_get(io, i);
		struct agent_io *x = &vm->io[vm->nr_io++];
		const char *dev = json_string_value(json_object_get(d, "device"));
		const char *id = json_string_value(json_object_get(d, "id"));
		snprintf(x->device, sizeof(x->device), "%s", dev ? dev : "");
		snprintf(x->id, sizeof(x->id), "%s", id ? id : "");
		x->ops = (uint64_t)num(d, "ops");
		x->read_bytes = (uint64_t)num(d, "read_bytes");
		x->write_bytes = (uint64_t)num(d, "write_bytes");
		x->rate_limited = (uint64_t)num(d, "rate_limited_events");
		x->throttled_ns = (uint64_t)num(d, "throttled_ns");
	}
	json_decref(o);
	return 0;
}

static int wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	int n = poll(&p, 1, HTTP_TIMEOUT_MS);

	return n > 0 ? 0 : n == 0 ? -ETIMEDOUT : -errno;
}

int agent_http_unix(const char *sock, const char *path, char **body)
{
	char req[512];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
		 path);
	return agent_http_raw(sock, req, body);
}

int agent_http_raw(const char *sock, const char *req, char **body)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	char *discard = NULL;
	int fd, ret;

	if (!body)
		body = &discard;
	*body = NULL;
	if (strlen(sock) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	strcpy(a.sun_path, sock);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		ret = -errno;
		close(fd);
		return ret;
	}
	size_t n = strlen(req);
	if (write(fd, req, n) != (ssize_t)n) {
		close(fd);
		return -EIO;
	}
	char *buf = malloc(HTTP_MAX + 1);
	size_t len = 0;
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		ret = wait_fd(fd, POLLIN);
		if (ret)
			break;
		ssize_t got = read(fd, buf + len, HTTP_MAX - len);
		if (got < 0) {
			ret = -errno;
			break;
		}
		if (got == 0 || (len += (size_t)got) == HTTP_MAX)
			break;
	}
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	buf[len] = '\0';
	int status = 0;
	char *sep = strstr(buf, "\r\n\r\n");
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1 || !sep) {
		free(buf);
		return -EPROTO;
	}
	memmove(buf, sep + 4, strlen(sep + 4) + 1);
	*body = buf;
	free(discard);
	return status;
}

int agent_scrape(struct agent_vm *vm)
{
	char *body, err[160];
	int st = agent_http_unix(vm->sock, "/demand", &body);

	vm->up = false;
	if (st < 0)
		return st;
	if (st != 200 || agent_parse_demand(body, vm, err, sizeof(err))) {
		free(body);
		return -EPROTO;
	}
	free(body);
	vm->up = true;
	return 0;
}
