/*
 * Null store: a medium of any size that holds nothing. Reads return zeros, writes are accepted
 * and dropped, flush and unmap succeed. It costs no memory or I/O whatever its size, so a LUN
 * on it measures the protocol and SCSI paths alone. Every block is unallocated (thin, reads as
 * zeros), which is exactly what a reader sees.
 */
#include "store/store.h"
#include "store/store_io.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util/sbuf.h"

static bool range_ok(const struct store *st, uint64_t off, uint64_t len)
{
	return off <= st->size && len <= st->size - off;
}

static int null_read(struct store *st, void *buf, size_t len, uint64_t off)
{
	if (!range_ok(st, off, len))
		return -ERANGE;
	memset(buf, 0, len);
	return 0;
}

/* What refuses a change: a read-only LUN or a range past the end, as on any other store. */
static int null_change(struct store *st, uint64_t off, uint64_t len)
{
	if (st->read_only)
		return -EROFS;
	return range_ok(st, off, len) ? 0 : -ERANGE;
}

static int null_write(struct store *st, const void *buf, size_t len, uint64_t off)
{
	(void)buf;
	return null_change(st, off, len);
}

static int null_flush(struct store *st)
{
	(void)st;
	return 0;
}

static int null_extent(struct store *st, uint64_t off, bool *mapped, uint64_t *run)
{
	if (off >= st->size)
		return -ERANGE;
	*mapped = false;
	*run = st->size - off;
	return 0;
}

static int null_resize(struct store *st, uint64_t new_size)
{
	if (new_size == 0)
		return -EINVAL;
	st->size = new_size;
	return 0;
}

static void null_close(struct store *st)
{
	free(st->path);
	free(st);
}

static const struct store_ops null_ops = {
	.read = null_read,
	.write = null_write,
	.flush = null_flush,
	.unmap = null_change,
	.extent = null_extent,
	.resize = null_resize,
	.close = null_close,
	.zero = null_change,
};

struct store *store_null_open(uint64_t size, bool read_only, char **err)
{
	struct store *st;

	if (size == 0) {
		*err = xstrdup("null store: needs a size");
		return NULL;
	}
	st = xcalloc(1, sizeof(*st));
	st->ops = &null_ops;
	st->size = size;
	st->read_only = read_only;
	st->thin = true;
	st->wait = STORE_WAIT_NEVER;
	/*
	 * Unmapping and zeroing are free here. WRITE SAME and COMPARE AND WRITE are left to the SCSI
	 * layer's generic paths: a medium that keeps nothing cannot repeat a pattern or compare.
	 */
	st->caps = STORE_CAP_UNMAP | STORE_CAP_WRITE_ZEROES;
	st->fd = -1;
	st->path = xstrdup("null");
	return st;
}
