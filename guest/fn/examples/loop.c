/* loop.c - test only: never returns (the runtime stops it at the
 * request's deadline: FN_TIMEOUT). "sleep" loops in fn_sleep_ns instead
 * of spinning. */
#include "fn.h"

int fn_handle(const uint8_t *req, uint32_t req_len, uint8_t *resp, uint32_t resp_cap,
	      uint32_t *resp_len)
{
	volatile uint64_t n = 0;

	(void)resp;
	(void)resp_cap;
	(void)resp_len;
	if (req_len == 5 && memcmp(req, "sleep", 5) == 0)
		for (;;)
			fn_sleep_ns(1000000);
	for (;;)
		n++;
}
