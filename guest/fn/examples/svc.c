/* svc.c - test only: the runtime's services.
 *   "random N"  N bytes from fn_random
 *   "clock"     "<ns> <ns>": fn_clock_ns twice, around a 1 ms fn_sleep_ns
 *   "log TEXT"  TEXT on the serial console through fn_log, answers "logged"
 *   "state"     a counter kept across requests */
#include "fn.h"

static uint64_t calls;

static int starts(const uint8_t *req, uint32_t len, const char *word)
{
	uint32_t n = (uint32_t)fn_strlen(word);

	return len >= n && memcmp(req, word, n) == 0;
}

int fn_handle(const uint8_t *req, uint32_t req_len, uint8_t *resp, uint32_t resp_cap,
	      uint32_t *resp_len)
{
	uint32_t n = 0;

	calls++;
	if (starts(req, req_len, "random ")) {
		const char *p = (const char *)req + 7;
		uint64_t len;
		if (fn_parse_u64(&p, (const char *)req + req_len, &len) || len > resp_cap)
			return 1;
		fn_random(resp, len);
		*resp_len = (uint32_t)len;
		return 0;
	}
	if (starts(req, req_len, "clock")) {
		uint64_t t0 = fn_clock_ns();
		fn_sleep_ns(1000000);
		uint64_t t1 = fn_clock_ns();
		n += (uint32_t)fn_fmt_u64((char *)resp + n, t0);
		resp[n++] = ' ';
		n += (uint32_t)fn_fmt_u64((char *)resp + n, t1);
		*resp_len = n;
		return 0;
	}
	if (starts(req, req_len, "log ")) {
		char line[128];
		uint32_t len = req_len - 4 < sizeof(line) - 1 ? req_len - 4 : sizeof(line) - 1;
		memcpy(line, req + 4, len);
		line[len] = 0;
		fn_log(line);
		memcpy(resp, "logged", 6);
		*resp_len = 6;
		return 0;
	}
	if (starts(req, req_len, "state")) {
		*resp_len = (uint32_t)fn_fmt_u64((char *)resp, calls);
		return 0;
	}
	return 1;
}
