/* libFuzzer target for the snapshot state-file parser (snapshot/state.c):
 * whatever the bytes, parse either fails with a message or returns
 * sections that lie inside the buffer (ASan checks every byte read). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_state st;
	char err[256];
	/* An exact-size copy: reads past the end are caught. */
	uint8_t *buf = malloc(size ? size : 1);

	if (!buf)
		return 0;
	memcpy(buf, data, size);
	/* Most inputs fail the checksum: also try them with it fixed, so the
	 * fuzzer reaches the section walk. */
	for (int pass = 0; pass < 2; pass++) {
		if (pass == 1) {
			if (size < SNAP_HEADER_SIZE + SNAP_TRAILER_SIZE)
				break;
			uint32_t crc = snap_crc32(0, buf, size - SNAP_TRAILER_SIZE);
			memcpy(buf + size - SNAP_TRAILER_SIZE, &crc, 4);
		}
		if (snap_state_parse(buf, size, &st, err, sizeof(err)) == 0) {
			uint64_t sum = 0;
			for (uint32_t i = 0; i < st.nr_sections; i++) {
				const struct snap_section *s = &st.sections[i];
				for (uint64_t j = 0; j < s->len; j++)
					sum += s->data[j];
				if (snap_state_find(&st, s->tag, s->instance) == NULL)
					abort();
			}
			(void)snap_state_count(&st, 4);
			snap_state_free(&st);
			if (sum == 0xdeadbeefcafeULL)
				buf[0] ^= 1; /* keep the loop from being optimised away */
		} else if (!err[0]) {
			abort(); /* every failure says why */
		}
	}
	free(buf);
	return 0;
}
