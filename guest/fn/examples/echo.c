/* echo.c - answers with the request's bytes, unchanged. */
#include "fn.h"

int fn_handle(const uint8_t *req, uint32_t req_len, uint8_t *resp, uint32_t resp_cap,
	      uint32_t *resp_len)
{
	(void)resp_cap; /* FN_MAX_REQUEST == FN_MAX_RESPONSE */
	memcpy(resp, req, req_len);
	*resp_len = req_len;
	return 0;
}
