/*
 * cmdline.c - the kernel command line and the exit port: shared by every
 * program built from the unikernel's objects (the test scenarios in
 * main.c, the function runtime in guest/fn/).
 */
#include "guest.h"

/* The kernel command line (start_info), "" if there is none. */
const char *guest_cmdline = "";

/*
 * Token lookup in the space-separated command line. *cursor starts at the
 * command line (NULL: guest_cmdline) and moves past each match, so the same
 * key can be found repeatedly (virtio_mmio.device=...). key includes the '='.
 * Returns 1 with *val and *len set to the value, 0 when there are no more.
 */
int cmdline_next(const char **cursor, const char *key, const char **val,
		 size_t *len)
{
	const char *p = *cursor ? *cursor : guest_cmdline;
	size_t key_len = lib_strlen(key);

	while (*p) {
		const char *tok;

		while (*p == ' ')
			p++;
		tok = p;
		while (*p && *p != ' ')
			p++;
		if ((size_t)(p - tok) >= key_len &&
		    memcmp(tok, key, key_len) == 0) {
			*val = tok + key_len;
			*len = (size_t)(p - *val);
			*cursor = p;
			return 1;
		}
	}
	*cursor = p;
	return 0;
}

/* The first token "key..." (key includes '='): 1 if found, else 0. */
int cmdline_find(const char *key, const char **val, size_t *len)
{
	const char *cursor = NULL;

	return cmdline_next(&cursor, key, val, len);
}

/* Decimal value of token "key<N>", or def if absent or malformed. */
uint64_t cmdline_u64(const char *key, uint64_t def)
{
	const char *val;
	size_t len;
	uint64_t out;

	if (!cmdline_find(key, &val, &len) || lib_parse_u64(val, len, &out))
		return def;
	return out;
}

void guest_exit(int code)
{
	io_out8(GUEST_EXIT_PORT, (uint8_t)code);
	/* Without an exit device (or while the monitor tears down): stop. */
	for (;;)
		__asm__ volatile("cli; hlt");
}
