/* The snapshot state-file container (snapshot/state.c) and memory file
 * writer (snapshot/memfile.c): round trips, and every way a file can be
 * damaged is an error with a reason, never a crash or a bad read. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "snapshot/memfile.h"
#include "snapshot/state.h"

#define MIB (1024ULL * 1024)

static uint8_t *build(size_t *len)
{
	static struct snap_writer w;
	const uint8_t *out;
	uint32_t a = 0x11223344;
	char text[100];

	snap_writer_free(&w);
	snap_writer_init(&w);
	memset(text, 'x', sizeof(text));
	assert_int_equal(snap_writer_add(&w, 1, 0, &a, sizeof(a)), 0);
	assert_int_equal(snap_writer_add(&w, 4, 0, text, 13), 0);
	assert_int_equal(snap_writer_add(&w, 4, 1, text, sizeof(text)), 0);
	assert_int_equal(snap_writer_add(&w, 9, 7, NULL, 0), 0);
	assert_int_equal(snap_writer_finish(&w, &out, len), 0);
	uint8_t *copy = malloc(*len);
	memcpy(copy, out, *len);
	return copy;
}

static void test_round_trip(void **state)
{
	struct snap_state st;
	char err[256];
	size_t len;
	uint8_t *b = build(&len);

	(void)state;
	assert_int_equal(len % 8, 0);
	assert_int_equal(snap_state_parse(b, len, &st, err, sizeof(err)), 0);
	assert_int_equal(st.major, SNAP_MAJOR);
	assert_int_equal(st.nr_sections, 4);
	const struct snap_section *s = snap_state_find(&st, 1, 0);
	assert_non_null(s);
	assert_int_equal(s->len, 4);
	uint32_t a;
	memcpy(&a, s->data, 4);
	assert_int_equal(a, 0x11223344);
	assert_int_equal(snap_state_find(&st, 4, 1)->len, 100);
	assert_int_equal(snap_state_find(&st, 4, 0)->len, 13);
	assert_int_equal(snap_state_find(&st, 9, 7)->len, 0);
	assert_null(snap_state_find(&st, 4, 2));
	assert_null(snap_state_find(&st, 2, 0));
	assert_int_equal(snap_state_count(&st, 4), 2);
	assert_int_equal(snap_state_count(&st, 5), 0);
	snap_state_free(&st);
	free(b);
}

static void expect_bad(const uint8_t *b, size_t len, const char *needle)
{
	struct snap_state st;
	char err[256] = "";

	assert_int_equal(snap_state_parse(b, len, &st, err, sizeof(err)), -EINVAL);
	if (needle && !strstr(err, needle))
		fail_msg("error '%s' does not mention '%s'", err, needle);
	assert_null(st.sections);
}

static void test_every_truncation_is_an_error(void **state)
{
	size_t len;
	uint8_t *b = build(&len);

	(void)state;
	for (size_t n = 0; n < len; n++) {
		/* A fresh buffer of exactly n bytes: ASan sees any read past it. */
		uint8_t *t = malloc(n ? n : 1);
		memcpy(t, b, n);
		expect_bad(t, n, n >= 8 ? "truncated" : NULL);
		free(t);
	}
	free(b);
}

static void test_every_flipped_byte_is_caught(void **state)
{
	size_t len;
	uint8_t *b = build(&len);

	(void)state;
	for (size_t i = 0; i < len; i++) {
		b[i] ^= 0x01;
		expect_bad(b, len, NULL);
		b[i] ^= 0x01;
	}
	free(b);
}

static void reseal(uint8_t *b, size_t len)
{
	uint32_t crc = snap_crc32(0, b, len - SNAP_TRAILER_SIZE);
	memcpy(b + len - SNAP_TRAILER_SIZE, &crc, 4);
}

static void test_header_checks(void **state)
{
	size_t len;
	uint8_t *b = build(&len);

	(void)state;
	b[0] = 'X';
	expect_bad(b, len, "wrong magic");
	b[0] = 'M';
	b[8] = SNAP_MAJOR + 1;
	reseal(b, len);
	expect_bad(b, len, "unsupported version 2.0");
	b[8] = SNAP_MAJOR;
	/* A newer minor of the same major still reads. */
	b[10] = 7;
	reseal(b, len);
	struct snap_state st;
	char err[128];
	assert_int_equal(snap_state_parse(b, len, &st, err, sizeof(err)), 0);
	assert_int_equal(st.minor, 7);
	snap_state_free(&st);
	/* Trailing bytes. */
	uint8_t *longer = calloc(1, len + 8);
	memcpy(longer, b, len);
	expect_bad(longer, len + 8, "trailing garbage");
	free(longer);
	free(b);
}

/* Section headers that lie, with a valid checksum over the lie. */
static void test_lying_sections(void **state)
{
	size_t len;
	uint8_t *b = build(&len);
	uint64_t huge = UINT64_MAX - 3, big = len;
	uint32_t many = 5;

	(void)state;
	uint8_t *t = malloc(len);
	memcpy(t, b, len);
	memcpy(t + SNAP_HEADER_SIZE + 8, &huge, 8);
	reseal(t, len);
	expect_bad(t, len, "past the end");
	memcpy(t, b, len);
	memcpy(t + SNAP_HEADER_SIZE + 8, &big, 8);
	reseal(t, len);
	expect_bad(t, len, "past the end");
	memcpy(t, b, len);
	memcpy(t + 12, &many, 4);
	reseal(t, len);
	expect_bad(t, len, "runs past the end");
	many = 3;
	memcpy(t + 12, &many, 4);
	reseal(t, len);
	expect_bad(t, len, "after the last section");
	many = SNAP_MAX_SECTIONS + 1;
	memcpy(t + 12, &many, 4);
	reseal(t, len);
	expect_bad(t, len, "sections, at most");
	free(t);
	free(b);
}

static void test_crc_known_value(void **state)
{
	(void)state;
	/* The IEEE CRC-32 check value. */
	assert_int_equal(snap_crc32(0, "123456789", 9), 0xcbf43926);
}

/* ---- memory file ------------------------------------------------------------------ */

static int tmp_file(char *path)
{
	strcpy(path, "/tmp/mote-memfile-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	return fd;
}

static void test_memfile_sparse_and_footer(void **state)
{
	struct guest_mem mem;
	struct memfile_stats ms;
	struct snap_mem_footer f;
	char path[64];

	(void)state;
	assert_int_equal(guest_mem_init(&mem, 8 * MIB), 0);
	/* Three written pages, one written back to zeros. */
	memset(mem.base + 5 * 4096, 0xab, 4096);
	mem.base[2 * MIB + 17] = 1;
	mem.base[7 * MIB] = 0xcd;
	mem.base[4 * MIB] = 9;
	mem.base[4 * MIB] = 0;
	int fd = tmp_file(path);
	assert_int_equal(memfile_write(fd, &mem, NULL, false, &ms), 0);
	assert_int_equal(ms.written_pages, 3);
	assert_true(ms.candidate_pages >= 4 && ms.candidate_pages < 8 * MIB / 4096);
	assert_int_equal(memfile_write_footer(fd, mem.size, 0x1234, 0, false), 0);
	struct stat sb;
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_size, 8 * MIB + SNAP_MEM_FOOTER_SIZE);
	/* On disk: only what was written (plus the footer). */
	assert_true((uint64_t)sb.st_blocks * 512 <= 4 * 4096 + 64 * 1024);
	uint8_t page[4096];
	assert_int_equal(pread(fd, page, 4096, 5 * 4096), 4096);
	assert_int_equal(page[0], 0xab);
	assert_int_equal(page[4095], 0xab);
	assert_int_equal(pread(fd, page, 1, 7 * MIB), 1);
	assert_int_equal(page[0], 0xcd);
	assert_int_equal(pread(fd, page, 1, 4 * MIB), 1);
	assert_int_equal(page[0], 0);
	assert_int_equal(memfile_read_footer(fd, (uint64_t)sb.st_size, &f), 0);
	assert_int_equal(f.snapshot_id, 0x1234);
	assert_int_equal(f.mem_bytes, 8 * MIB);
	/* A damaged footer is refused. */
	uint8_t x = 0xff;
	assert_int_equal(pwrite(fd, &x, 1, (off_t)(8 * MIB + 9)), 1);
	assert_int_equal(memfile_read_footer(fd, (uint64_t)sb.st_size, &f), -EINVAL);
	assert_int_equal(memfile_read_footer(fd, 100, &f), -EINVAL);

	/* Mapped back MAP_PRIVATE: same bytes, writes stay private. */
	uint8_t one = 0;
	assert_int_equal(pwrite(fd, &one, 1, (off_t)(8 * MIB + 9)), 1);
	struct guest_mem back;
	int fd2 = dup(fd);
	assert_int_equal(guest_mem_init_file(&back, fd2, 8 * MIB), 0);
	assert_true(back.private_file);
	assert_int_equal(back.base[5 * 4096 + 100], 0xab);
	assert_int_equal(back.base[2 * MIB + 17], 1);
	back.base[0] = 0x77;
	assert_int_equal(pread(fd, page, 1, 0), 1);
	assert_int_equal(page[0], 0);
	/* A snapshot of the restored memory holds the file's data and the
	 * private write. */
	char path2[64];
	int out2 = tmp_file(path2);
	assert_int_equal(memfile_write(out2, &back, NULL, false, &ms), 0);
	assert_int_equal(ms.written_pages, 4);
	assert_int_equal(pread(out2, page, 1, 0), 1);
	assert_int_equal(page[0], 0x77);
	assert_int_equal(pread(out2, page, 1, 7 * MIB), 1);
	assert_int_equal(page[0], 0xcd);
	close(out2);
	guest_mem_destroy(&back);
	guest_mem_destroy(&mem);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_every_truncation_is_an_error),
		cmocka_unit_test(test_every_flipped_byte_is_caught),
		cmocka_unit_test(test_header_checks),
		cmocka_unit_test(test_lying_sections),
		cmocka_unit_test(test_crc_known_value),
		cmocka_unit_test(test_memfile_sparse_and_footer),
	};
	return cmocka_run_group_tests_name("snapshot_state", tests, NULL, NULL);
}
