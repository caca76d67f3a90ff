/* mote snapshot-merge: a base memory file plus a diff memory file is a
 * full memory file for the diff's state file. The diff holds exactly the
 * pages written since its parent (as data; holes are pages it does not
 * carry), so merging is copying its data extents over the base. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "snapshot/fail.h"
#include "snapshot/memfile.h"
#include "snapshot/snapshot.h"

#define COPY_CHUNK (1u << 20)

static int open_mem(const char *path, int flags, struct snap_mem_footer *f, char *err,
		    size_t errlen)
{
	struct stat sb;
	int fd = open(path, flags | O_CLOEXEC);

	if (fd < 0)
		return fail(err, errlen, -errno, "'%s': cannot open: %s", path,
			    strerror(errno));
	if (fstat(fd, &sb) < 0 || memfile_read_footer(fd, (uint64_t)sb.st_size, f) ||
	    (uint64_t)sb.st_size != f->mem_bytes + SNAP_MEM_FOOTER_SIZE) {
		close(fd);
		return fail(err, errlen, -EINVAL, "'%s': not a mote memory file (no valid "
			    "footer)", path);
	}
	return fd;
}

/* Copies the data extents of `in` within [0, end) to `out` at the same
 * offsets. */
static int copy_extents(int in, int out, uint64_t end, uint8_t *buf)
{
	off_t off = 0;

	while ((uint64_t)off < end) {
		off_t data = lseek(in, off, SEEK_DATA);
		if (data < 0)
			return errno == ENXIO ? 0 : -errno;
		if ((uint64_t)data >= end)
			return 0;
		off_t hole = lseek(in, data, SEEK_HOLE);
		if (hole < 0)
			return -errno;
		uint64_t stop = (uint64_t)hole < end ? (uint64_t)hole : end;
		for (uint64_t p = (uint64_t)data; p < stop;) {
			size_t n = stop - p < COPY_CHUNK ? (size_t)(stop - p) : COPY_CHUNK;
			ssize_t got = pread(in, buf, n, (off_t)p);
			if (got <= 0)
				return got < 0 ? -errno : -EIO;
			if (pwrite(out, buf, (size_t)got, (off_t)p) != got)
				return -EIO;
			p += (uint64_t)got;
		}
		off = hole;
	}
	return 0;
}

int snapshot_merge(const char *base_path, const char *diff_path, const char *out_path,
		   char *err, size_t errlen)
{
	struct snap_mem_footer bf, df;
	char tmp[SNAP_PATH_MAX + 32];
	uint8_t *buf = NULL;
	int base = -1, diff = -1, out = -1, ret;

	base = open_mem(base_path, O_RDONLY, &bf, err, errlen);
	if (base < 0)
		return base;
	diff = open_mem(diff_path, O_RDONLY, &df, err, errlen);
	if (diff < 0) {
		ret = diff;
		goto done;
	}
	ret = -EINVAL;
	if (!df.diff) {
		fail(err, errlen, ret, "'%s' is a full memory file, not a diff", diff_path);
		goto done;
	}
	if (bf.diff) {
		fail(err, errlen, ret, "'%s' is itself a diff: merge it onto its base first",
		     base_path);
		goto done;
	}
	if (df.parent_id != bf.snapshot_id || df.mem_bytes != bf.mem_bytes) {
		fail(err, errlen, ret, "'%s' is a diff of snapshot %016llx, but '%s' is "
		     "snapshot %016llx", diff_path, (unsigned long long)df.parent_id,
		     base_path, (unsigned long long)bf.snapshot_id);
		goto done;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp-%d", out_path, (int)getpid());
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	buf = malloc(COPY_CHUNK);
	if (out < 0 || !buf) {
		ret = fail(err, errlen, out < 0 ? -errno : -ENOMEM, "cannot create '%s': %s",
			   tmp, strerror(out < 0 ? errno : ENOMEM));
		goto done;
	}
	/* The base's data, then the diff's on top; holes stay holes. */
	ret = copy_extents(base, out, bf.mem_bytes, buf);
	if (!ret)
		ret = copy_extents(diff, out, df.mem_bytes, buf);
	if (!ret)
		ret = memfile_write_footer(out, df.mem_bytes, df.snapshot_id, 0, false);
	if (!ret && fsync(out) < 0)
		ret = -errno;
	if (!ret && rename(tmp, out_path) < 0)
		ret = -errno;
	if (ret)
		fail(err, errlen, ret, "writing '%s': %s", out_path, strerror(-ret));
done:
	if (ret && out >= 0)
		unlink(tmp);
	if (out >= 0)
		close(out);
	if (diff >= 0)
		close(diff);
	close(base);
	free(buf);
	return ret;
}
