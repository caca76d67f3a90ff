/* big.c - test only: a response of N bytes (the request is N in
 * decimal), byte i = (i * 7 + 3) & 0xff. N over the limit: it writes
 * what fits and claims N, which the runtime answers with FN_TOO_LARGE.
 * "overrun": writes past the end of the response buffer (a fault). */
#include "fn.h"

int fn_handle(const uint8_t *req, uint32_t req_len, uint8_t *resp, uint32_t resp_cap,
	      uint32_t *resp_len)
{
	const char *p = (const char *)req;
	uint64_t n;

	if (req_len == 7 && memcmp(req, "overrun", 7) == 0) {
		for (uint64_t i = 0;; i += 64)
			((volatile uint8_t *)resp)[resp_cap + i] = 1;
	}
	if (fn_parse_u64(&p, p + req_len, &n) || n > 0xffffffffu)
		return 1;
	for (uint64_t i = 0; i < n && i < resp_cap; i++)
		resp[i] = (uint8_t)(i * 7 + 3);
	*resp_len = (uint32_t)n;
	return 0;
}
