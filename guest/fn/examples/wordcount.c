/* wordcount.c - counts lines, words and bytes of the request, as wc(1)
 * does: "<lines> <words> <bytes>\n". A word is a run of bytes that are
 * not space, tab, newline, carriage return, vertical tab or form feed. */
#include "fn.h"

static int is_space(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

int fn_handle(const uint8_t *req, uint32_t req_len, uint8_t *resp, uint32_t resp_cap,
	      uint32_t *resp_len)
{
	uint64_t lines = 0, words = 0;
	int in_word = 0;
	uint32_t n = 0;

	(void)resp_cap;
	for (uint32_t i = 0; i < req_len; i++) {
		if (req[i] == '\n')
			lines++;
		if (is_space(req[i])) {
			in_word = 0;
		} else if (!in_word) {
			in_word = 1;
			words++;
		}
	}
	n += (uint32_t)fn_fmt_u64((char *)resp + n, lines);
	resp[n++] = ' ';
	n += (uint32_t)fn_fmt_u64((char *)resp + n, words);
	resp[n++] = ' ';
	n += (uint32_t)fn_fmt_u64((char *)resp + n, req_len);
	resp[n++] = '\n';
	*resp_len = n;
	return 0;
}
