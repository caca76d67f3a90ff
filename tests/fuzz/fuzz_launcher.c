/* libFuzzer target for mote-fnd's input parsers: what a client sends
 * (the route and a function's registration document) and what a VM sends
 * back (the vsock handshake line and the runtime's response, fed in
 * chunks whose sizes the input chooses). None may crash, leak or read out
 * of bounds, and a parsed document must hold values within the bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/fnwire.h"
#include "launcher/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t mode = data[0] % 3;
	data++;
	size--;

	if (mode == 0) {
		/* a VM's answer, in chunks: each chunk's length is its first byte */
		struct fn_reader r;
		fn_reader_init(&r);
		size_t off = 0;
		while (off < size && r.st != FNR_ERROR) {
			size_t n = (size_t)data[off++] + 1;
			if (n > size - off)
				n = size - off;
			fn_reader_feed(&r, data + off, n);
			off += n;
		}
		if (r.st == FNR_DONE && (r.body_len != r.hdr.body_len || r.body_len > FN_MAX_RESPONSE))
			abort();
		fn_reader_free(&r);
	} else if (mode == 1) {
		/* a registration document */
		struct fn_spec s;
		char err[256];
		if (fn_spec_parse("fuzz", (const char *)data, size, &s, err, sizeof(err)) == 0 &&
		    (s.image[0] != '/' || s.mem_mib < FN_MIN_MEM_MIB || s.mem_mib > FN_MAX_MEM_MIB ||
		     s.vcpus < 1 || s.vcpus > FN_MAX_VCPUS || s.concurrency < 1 ||
		     s.max_instances < 1 || s.timeout_ms < 1))
			abort();
	} else {
		/* method and path: "METHOD PATH" */
		char buf[2048], name[FN_NAME_MAX + 1];
		size_t n = size < sizeof(buf) - 1 ? size : sizeof(buf) - 1;
		memcpy(buf, data, n);
		buf[n] = '\0';
		char *sp = strchr(buf, ' ');
		const char *path = sp ? sp + 1 : "/";
		if (sp)
			*sp = '\0';
		enum fnd_route r = fnd_route(buf, path, name);
		if ((r == ROUTE_PUT || r == ROUTE_GET || r == ROUTE_DELETE || r == ROUTE_INVOKE) &&
		    !fn_name_valid(name))
			abort();
	}
	return 0;
}
