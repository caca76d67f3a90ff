/* libFuzzer target: the API's request path without a VMM.
 *
 * The input is raw bytes from a client: they go through the connection
 * engine (http_parser, keep-alive, body limit, routing, strict JSON
 * validation) in pieces whose sizes come from the first byte, and a stub
 * VMM answers every request that passes validation. The same bytes are
 * also parsed as a --config-file document. Every answer must be a
 * well-formed HTTP response: status 200/204/400, with a fault_message body
 * on a 400. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"

#define MAX_PAYLOAD 4096 /* small, so over-limit bodies are reachable */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void stub_vmm(void *opaque, const struct api_request *req, struct api_response *resp)
{
	(void)opaque;
	/* Touch what validation produced: strings must be terminated. */
	switch (req->op) {
	case API_PUT_BOOT_SOURCE:
		if (strlen(req->boot.kernel_path) >= API_PATH_MAX ||
		    strlen(req->boot.boot_args) >= API_CMDLINE_MAX)
			abort();
		break;
	case API_PUT_DRIVE:
	case API_PATCH_DRIVE:
		if (strlen(req->drive.blk.id) > BLK_ID_LEN || strcmp(req->drive.blk.id, req->path_id))
			abort();
		break;
	case API_PUT_MACHINE_CONFIG:
		if (req->machine.vcpu_count < 1 || req->machine.vcpu_count > API_MAX_VCPUS)
			abort();
		break;
	default:
		break;
	}
	if (req->op == API_GET_INSTANCE_INFO)
		api_response_body(resp, 200, strdup("{\"state\":\"Not started\"}"));
	else
		api_response_body(resp, 204, NULL);
}

static void check_output(const char *out, size_t len)
{
	if (!len)
		return;
	const char *p = out, *end = out + len;

	while (p < end) {
		if (end - p < 12 || memcmp(p, "HTTP/1.1 ", 9))
			abort();
		int status = atoi(p + 9);
		if (status != 100 && status != 200 && status != 204 && status != 400)
			abort();
		const char *hdr_end = memmem(p, (size_t)(end - p), "\r\n\r\n", 4);
		if (!hdr_end)
			abort();
		const char *cl = memmem(p, (size_t)(hdr_end - p), "Content-Length: ", 16);
		size_t blen = cl ? strtoul(cl + 16, NULL, 10) : 0;
		const char *body = hdr_end + 4;
		if ((size_t)(end - body) < blen)
			abort();
		if (status == 400 && (blen < 17 || memcmp(body, "{\"fault_message\":", 17)))
			abort();
		p = body + blen;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	size_t chunk = data[0] ? data[0] : 1;
	const char *in = (const char *)data + 1;
	size_t left = size - 1;
	struct api_conn *c = api_conn_new(MAX_PAYLOAD, stub_vmm, NULL);

	if (!c)
		return 0;
	while (left) {
		size_t n = left < chunk ? left : chunk;
		int closing = api_conn_feed(c, in, n);
		size_t len;
		const char *out = api_conn_output(c, &len);
		check_output(out, len);
		api_conn_consume(c, len);
		in += n;
		left -= n;
		if (closing)
			break;
	}
	api_conn_free(c);

	struct api_request *reqs;
	size_t nr;
	char err[512];
	if (api_parse_vm_config((const char *)data, size, &reqs, &nr, err, sizeof(err)) == 0)
		free(reqs);
	else if (!err[0])
		abort(); /* every refusal says why */
	return 0;
}
