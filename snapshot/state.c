/* The state file container; see state.h. */
#include "snapshot/state.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

/* zlib's CRC-32 (the IEEE polynomial, as in gzip and zip): tuned and
 * kept by others; every restore checks its whole state file (~24 KiB).
 * crc32_z takes a size_t length. */
uint32_t snap_crc32(uint32_t crc, const void *data, size_t len)
{
	return (uint32_t)crc32_z(crc, data, len);
}

static size_t pad8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

void snap_writer_init(struct snap_writer *w)
{
	memset(w, 0, sizeof(*w));
	w->len = SNAP_HEADER_SIZE;
}

static int snap_writer_reserve(struct snap_writer *w, size_t more)
{
	if (w->err)
		return w->err;
	if (more > SNAP_MAX_FILE || w->len + more > SNAP_MAX_FILE)
		return w->err = -EFBIG;
	if (w->len + more <= w->cap)
		return 0;
	size_t cap = w->cap ? w->cap : 65536;
	while (cap < w->len + more)
		cap *= 2;
	uint8_t *n = realloc(w->buf, cap);
	if (!n)
		return w->err = -ENOMEM;
	memset(n + w->cap, 0, cap - w->cap);
	w->buf = n;
	w->cap = cap;
	return 0;
}

void *snap_writer_section(struct snap_writer *w, uint32_t tag, uint32_t instance, size_t len)
{
	if (w->nr_sections >= SNAP_MAX_SECTIONS) {
		w->err = w->err ? w->err : -E2BIG;
		return NULL;
	}
	if (snap_writer_reserve(w, SNAP_SECTION_HDR + pad8(len) + SNAP_TRAILER_SIZE))
		return NULL;
	uint8_t *h = w->buf + w->len;
	uint64_t len64 = len;
	memcpy(h, &tag, 4);
	memcpy(h + 4, &instance, 4);
	memcpy(h + 8, &len64, 8);
	memset(h + SNAP_SECTION_HDR, 0, pad8(len));
	w->len += SNAP_SECTION_HDR + pad8(len);
	w->nr_sections++;
	return h + SNAP_SECTION_HDR;
}

int snap_writer_add(struct snap_writer *w, uint32_t tag, uint32_t instance, const void *data,
		    size_t len)
{
	void *p = snap_writer_section(w, tag, instance, len);

	if (!p)
		return w->err;
	if (len)
		memcpy(p, data, len);
	return 0;
}

int snap_writer_finish(struct snap_writer *w, const uint8_t **out, size_t *len)
{
	if (snap_writer_reserve(w, SNAP_TRAILER_SIZE))
		return w->err;
	uint16_t major = SNAP_MAJOR, minor = SNAP_MINOR;
	uint64_t total = w->len + SNAP_TRAILER_SIZE;
	memcpy(w->buf, SNAP_MAGIC, 8);
	memcpy(w->buf + 8, &major, 2);
	memcpy(w->buf + 10, &minor, 2);
	memcpy(w->buf + 12, &w->nr_sections, 4);
	memcpy(w->buf + 16, &total, 8);
	memset(w->buf + 24, 0, 8);
	uint32_t crc = snap_crc32(0, w->buf, w->len);
	memcpy(w->buf + w->len, &crc, 4);
	memcpy(w->buf + w->len + 4, SNAP_TRAILER_MAGIC, 4);
	*out = w->buf;
	*len = (size_t)total;
	return 0;
}

void snap_writer_free(struct snap_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

__attribute__((format(printf, 3, 4))) static int snap_bad(char *err, size_t errlen,
							  const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int snap_state_parse(const uint8_t *buf, size_t len, struct snap_state *st, char *err,
		     size_t errlen)
{
	uint64_t total;
	uint32_t crc, want;

	memset(st, 0, sizeof(*st));
	if (len < 8 || memcmp(buf, SNAP_MAGIC, 8))
		return snap_bad(err, errlen, len < 8 ? "truncated: %zu bytes, not even a header"
						     : "wrong magic: not a mote snapshot state file",
				len);
	if (len < SNAP_HEADER_SIZE + SNAP_TRAILER_SIZE)
		return snap_bad(err, errlen, "truncated: %zu bytes, shorter than header and trailer",
				len);
	memcpy(&st->major, buf + 8, 2);
	memcpy(&st->minor, buf + 10, 2);
	memcpy(&st->nr_sections, buf + 12, 4);
	memcpy(&total, buf + 16, 8);
	if (st->major != SNAP_MAJOR)
		return snap_bad(err, errlen,
				"unsupported version %u.%u: this mote reads version %u.x files",
				st->major, st->minor, SNAP_MAJOR);
	if (total > len)
		return snap_bad(err, errlen, "truncated: the header says %llu bytes, the file has %zu",
				(unsigned long long)total, len);
	if (total < len)
		return snap_bad(err, errlen, "%zu bytes of trailing garbage after the %llu-byte snapshot",
				len - (size_t)total, (unsigned long long)total);
	if (memcmp(buf + len - 4, SNAP_TRAILER_MAGIC, 4))
		return snap_bad(err, errlen, "truncated or damaged: no end marker");
	memcpy(&want, buf + len - SNAP_TRAILER_SIZE, 4);
	crc = snap_crc32(0, buf, len - SNAP_TRAILER_SIZE);
	if (crc != want)
		return snap_bad(err, errlen, "checksum mismatch (stored %08x, computed %08x): the file "
				"is damaged", want, crc);
	if (st->nr_sections > SNAP_MAX_SECTIONS)
		return snap_bad(err, errlen, "%u sections, at most %u", st->nr_sections,
				SNAP_MAX_SECTIONS);
	st->sections = calloc(st->nr_sections ? st->nr_sections : 1, sizeof(*st->sections));
	if (!st->sections)
		return -ENOMEM;
	size_t off = SNAP_HEADER_SIZE, end = len - SNAP_TRAILER_SIZE;
	for (uint32_t i = 0; i < st->nr_sections; i++) {
		struct snap_section *s = &st->sections[i];

		if (end - off < SNAP_SECTION_HDR) {
			uint32_t nr = st->nr_sections;
			snap_state_free(st);
			return snap_bad(err, errlen, "section %u of %u runs past the end", i, nr);
		}
		memcpy(&s->tag, buf + off, 4);
		memcpy(&s->instance, buf + off + 4, 4);
		memcpy(&s->len, buf + off + 8, 8);
		off += SNAP_SECTION_HDR;
		if (s->len > end - off || pad8((size_t)s->len) > end - off) {
			uint32_t tag = s->tag;
			unsigned long long slen = s->len;
			snap_state_free(st);
			return snap_bad(err, errlen, "section %u (tag %u) is %llu bytes, past the end", i,
					tag, slen);
		}
		s->data = buf + off;
		off += pad8((size_t)s->len);
	}
	if (off != end) {
		snap_state_free(st);
		return snap_bad(err, errlen, "%zu bytes after the last section", end - off);
	}
	return 0;
}

void snap_state_free(struct snap_state *st)
{
	free(st->sections);
	st->sections = NULL;
	st->nr_sections = 0;
}

const struct snap_section *snap_state_find(const struct snap_state *st, uint32_t tag,
					   uint32_t instance)
{
	for (uint32_t i = 0; i < st->nr_sections; i++)
		if (st->sections[i].tag == tag && st->sections[i].instance == instance)
			return &st->sections[i];
	return NULL;
}

unsigned snap_state_count(const struct snap_state *st, uint32_t tag)
{
	unsigned n = 0;

	for (uint32_t i = 0; i < st->nr_sections; i++)
		n += st->sections[i].tag == tag;
	return n;
}
