/* mote-fn: the command line for mote-fnd (see launcher/README.md). */
#include <errno.h>
#include <stdbool.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "guest/fn/protocol.h"
#include "launcher/hclient.h"

#define DEFAULT_SOCK "/tmp/mote-fnd.sock"

static const char *sock_path;
static int timeout_ms = 120000;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mote-fn [--sock PATH] COMMAND ...\n"
		"\n"
		"  register NAME IMAGE [--mem MIB] [--vcpus N] [--concurrency N] [--ttl S]\n"
		"                      [--max-instances N] [--timeout-ms N] [--standby N]\n"
		"  invoke NAME [-v]    body on stdin, response on stdout (-v: timing headers\n"
		"                      on stderr); exit 0 on 200, 1 otherwise\n"
		"  ls                  the registered functions\n"
		"  show NAME           one function and its instances\n"
		"  rm NAME             unregister (its instances stop)\n"
		"  scale NAME N        start N instances now\n"
		"  check NAME          invoke every idle instance once\n"
		"  metrics             the launcher's Prometheus metrics\n"
		"\n"
		"The socket is --sock, else $MOTE_FND_SOCK, else %s.\n",
		DEFAULT_SOCK);
}

static int call(const char *method, const char *path, const char *body, size_t len,
		struct hclient_resp *r)
{
	char err[512];

	if (hclient_request(sock_path, method, path, body, len, timeout_ms, r, err, sizeof(err))) {
		fprintf(stderr, "mote-fn: %s (is mote-fnd running?)\n", err);
		return -1;
	}
	return 0;
}

/* Prints a JSON answer (pretty) or the error it carries; 0 for 2xx. */
static int show(struct hclient_resp *r)
{
	int ok = r->status >= 200 && r->status < 300;
	json_t *o = r->body_len ? json_loads(r->body, 0, NULL) : NULL;

	if (!ok) {
		json_t *e = o ? json_object_get(o, "error") : NULL;
		fprintf(stderr, "mote-fn: %d: %s\n", r->status,
			json_is_string(e) ? json_string_value(e) : r->body);
	} else if (o) {
		char *s = json_dumps(o, JSON_INDENT(2));
		if (s)
			puts(s);
		free(s);
	}
	json_decref(o);
	free(r->body);
	return ok ? 0 : 1;
}

static char *read_stdin(size_t *len)
{
	size_t cap = 65536;
	char *b = malloc(cap);

	*len = 0;
	while (b) {
		if (*len == cap) {
			char *n = realloc(b, cap * 2);
			if (!n) {
				free(b);
				return NULL;
			}
			b = n;
			cap *= 2;
		}
		ssize_t k = read(0, b + *len, cap - *len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		*len += (size_t)k;
	}
	return b;
}

static int cmd_register(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "mem", 1, NULL, 'm' }, { "vcpus", 1, NULL, 'c' }, { "concurrency", 1, NULL, 'n' },
		{ "ttl", 1, NULL, 't' }, { "max-instances", 1, NULL, 'x' },
		{ "timeout-ms", 1, NULL, 'o' }, { "standby", 1, NULL, 's' }, { NULL, 0, NULL, 0 },
	};
	const char *keys[128] = { 0 };
	keys['m'] = "mem_mib";
	keys['c'] = "vcpus";
	keys['n'] = "concurrency";
	keys['t'] = "idle_ttl_s";
	keys['x'] = "max_instances";
	keys['o'] = "timeout_ms";
	keys['s'] = "standby";
	json_t *o = json_object();
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c < 0 || c >= 128 || !keys[c]) {
			usage(stderr);
			return 64;
		}
		char *end;
		long long v = strtoll(optarg, &end, 10);
		if (*end || !*optarg) {
			fprintf(stderr, "mote-fn: '%s' is not a number\n", optarg);
			return 64;
		}
		json_object_set_new(o, keys[c], json_integer(v));
	}
	if (argc - optind != 2) {
		usage(stderr);
		return 64;
	}
	char image[PATH_MAX], path[128];
	if (!realpath(argv[optind + 1], image)) {
		fprintf(stderr, "mote-fn: %s: %s\n", argv[optind + 1], strerror(errno));
		return 66;
	}
	json_object_set_new(o, "image", json_string(image));
	char *body = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	snprintf(path, sizeof(path), "/functions/%s", argv[optind]);
	struct hclient_resp r;
	int ret = call("PUT", path, body, strlen(body), &r);
	free(body);
	return ret ? 1 : show(&r);
}

static int cmd_invoke(int argc, char **argv)
{
	bool verbose = false;
	const char *name = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			verbose = true;
		else if (!name)
			name = argv[i];
		else {
			usage(stderr);
			return 64;
		}
	}
	if (!name) {
		usage(stderr);
		return 64;
	}
	size_t len;
	char *body = read_stdin(&len);
	if (!body) {
		fprintf(stderr, "mote-fn: out of memory reading stdin\n");
		return 1;
	}
	char path[128];
	snprintf(path, sizeof(path), "/functions/%s/invoke", name);
	struct hclient_resp r;
	int ret = call("POST", path, body, len, &r);
	free(body);
	if (ret)
		return 1;
	if (verbose)
		fprintf(stderr, "HTTP %d\n%s\n", r.status, r.headers);
	if (r.status == 200) {
		fwrite(r.body, 1, r.body_len, stdout);
		free(r.body);
		return 0;
	}
	json_t *o = json_loadb(r.body, r.body_len, 0, NULL);
	json_t *e = o ? json_object_get(o, "error") : NULL;
	fprintf(stderr, "mote-fn: %d: %s\n", r.status, json_is_string(e) ? json_string_value(e) : r.body);
	json_decref(o);
	free(r.body);
	return 1;
}

int main(int argc, char **argv)
{
	int i = 1;

	sock_path = getenv("MOTE_FND_SOCK") ? getenv("MOTE_FND_SOCK") : DEFAULT_SOCK;
	if (i + 1 < argc && !strcmp(argv[i], "--sock")) {
		sock_path = argv[i + 1];
		i += 2;
	}
	if (i >= argc || !strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
		usage(i >= argc ? stderr : stdout);
		return i >= argc ? 64 : 0;
	}
	const char *cmd = argv[i];
	int sub_argc = argc - i;
	char **sub_argv = argv + i;
	char path[160], body[96];
	struct hclient_resp r;

	if (!strcmp(cmd, "register"))
		return cmd_register(sub_argc, sub_argv);
	if (!strcmp(cmd, "invoke"))
		return cmd_invoke(sub_argc, sub_argv);
	if (!strcmp(cmd, "ls") && sub_argc == 1)
		return call("GET", "/functions", NULL, 0, &r) ? 1 : show(&r);
	if (!strcmp(cmd, "metrics") && sub_argc == 1) {
		if (call("GET", "/metrics", NULL, 0, &r))
			return 1;
		fwrite(r.body, 1, r.body_len, stdout);
		free(r.body);
		return r.status == 200 ? 0 : 1;
	}
	if ((!strcmp(cmd, "show") || !strcmp(cmd, "rm") || !strcmp(cmd, "check")) && sub_argc == 2) {
		bool check = !strcmp(cmd, "check");
		snprintf(path, sizeof(path), "/functions/%s%s", sub_argv[1], check ? "/check" : "");
		if (call(!strcmp(cmd, "show") ? "GET" : check ? "POST" : "DELETE", path, NULL, 0, &r))
			return 1;
		return show(&r);
	}
	if (!strcmp(cmd, "scale") && sub_argc == 3) {
		snprintf(path, sizeof(path), "/functions/%s/scale", sub_argv[1]);
		snprintf(body, sizeof(body), "{\"add\": %ld}", strtol(sub_argv[2], NULL, 10));
		if (call("POST", path, body, strlen(body), &r))
			return 1;
		return show(&r);
	}
	usage(stderr);
	return 64;
}
