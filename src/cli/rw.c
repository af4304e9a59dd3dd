/* isthmus read and write: pipelined transfers between a LUN and a file. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/progress.h"

/* Pipelined reads and writes: up to depth commands in flight, refilled from their callbacks. */

struct pipe {
	struct ism_session *s;
	uint64_t lun;
	bool write;
	uint64_t lba, blocks, next_block;
	uint32_t bs, chunk_blocks;
	uint8_t *buf;
	int inflight;
	bool error;
	char err[512];
	struct progress prog;
};

static void pipe_submit(struct pipe *p);

static void pipe_done(struct ism_session *s, const struct ism_scsi_result *r, void *priv)
{
	struct pipe *p = priv;
	(void)s;
	p->inflight--;
	if (r->error != ISM_OK || r->status != 0) {
		if (!p->error) {
			p->error = true;
			if (r->error != ISM_OK && ism_session_error(s)[0])
				snprintf(p->err, sizeof(p->err), "%s", ism_session_error(s));
			else
				ism_result_text(r, p->err, sizeof(p->err));
		}
		return;
	}
	if (!p->write && r->underflow && r->residual) {
		if (!p->error) {
			p->error = true;
			snprintf(p->err, sizeof(p->err), "short read: %u bytes missing", r->residual);
		}
		return;
	}
	progress_add(&p->prog, r->transferred);
	pipe_submit(p);
}

static void pipe_submit(struct pipe *p)
{
	if (p->error || p->next_block >= p->blocks)
		return;
	uint64_t n = p->blocks - p->next_block;
	if (n > p->chunk_blocks)
		n = p->chunk_blocks;
	uint64_t lba = p->lba + p->next_block;
	uint8_t cdb[16];
	size_t cl;
	if (lba + n <= 0xffffffffull && n <= 0xffff)
		cl = ism_cdb_rw10(cdb, p->write, (uint32_t)lba, (uint16_t)n);
	else
		cl = ism_cdb_rw16(cdb, p->write, lba, (uint32_t)n);
	uint8_t *data = p->buf + p->next_block * p->bs;
	p->next_block += n;
	p->inflight++;
	if (!ism_scsi_async(p->s, p->lun, cdb, cl, p->write ? ISM_DIR_WRITE : ISM_DIR_READ, data, (uint32_t)(n * p->bs),
			    pipe_done, p)) {
		p->inflight--;
		p->error = true;
		snprintf(p->err, sizeof(p->err), "%s", ism_session_error(p->s));
	}
}

static int pipe_run(struct pipe *p, int depth)
{
	for (int i = 0; i < depth; i++)
		pipe_submit(p);
	if (ism_session_wait(p->s) < 0 && !p->error) {
		p->error = true;
		snprintf(p->err, sizeof(p->err), "%s", ism_session_error(p->s));
	}
	return p->error ? -1 : 0;
}

static int transfer(struct cli_opts *o, const char *url, bool write)
{
	if (!o->has_lba)
		return cli_fail("--lba is required");
	if (write && !o->in)
		return cli_fail("--in FILE is required");
	if (!write && !o->has_blocks)
		return cli_fail("--blocks is required");
	if (!write && !o->out && o->json)
		return cli_fail("--json needs --out FILE (the data would go to standard output)");
	struct ism_url *u = cli_parse_url(url, true);
	if (!u)
		return 1;
	uint8_t *buf = NULL;
	size_t size = 0;
	int rc = 0;
	if (write) {
		int fd = open(o->in, O_RDONLY);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) < 0) {
			rc = cli_fail("cannot read %s: %s", o->in, strerror(errno));
			if (fd >= 0)
				close(fd);
			ism_url_free(u);
			return rc;
		}
		size = (size_t)st.st_size;
		buf = malloc(size ? size : 1);
		size_t have = 0;
		while (buf && have < size) {
			ssize_t r = read(fd, buf + have, size - have);
			if (r <= 0)
				break;
			have += (size_t)r;
		}
		close(fd);
		if (!buf || have != size) {
			free(buf);
			ism_url_free(u);
			return cli_fail("cannot read %s", o->in);
		}
	}
	struct ism_session *s = cli_open_session(o, u);
	if (!s) {
		free(buf);
		ism_url_free(u);
		return 1;
	}
	uint64_t last;
	uint32_t bs;
	if (cli_get_capacity(s, u->lun, &last, &bs) < 0) {
		rc = cli_fail("%s", ism_session_error(s));
		goto out;
	}
	uint64_t blocks;
	if (write) {
		if (size % bs)
			rc = cli_fail("%s is %zu bytes, not a multiple of the %u-byte block size", o->in, size, bs);
		blocks = size / bs;
		if (o->has_blocks && o->blocks != blocks && !rc)
			rc = cli_fail("--blocks %" PRIu64 " does not match the %" PRIu64 " blocks of %s", o->blocks, blocks,
				  o->in);
	} else {
		blocks = o->blocks;
		if (blocks * bs > (uint64_t)SIZE_MAX / 2)
			rc = cli_fail("transfer too large");
		else if (!(buf = malloc(blocks * bs + 1)))
			rc = cli_fail("out of memory for %" PRIu64 " bytes", blocks * bs);
	}
	if (rc)
		goto out;
	if (o->lba > last + 1 || blocks > last + 1 - o->lba) {
		rc = cli_fail("LBA %" PRIu64 " + %" PRIu64 " blocks goes past the end of the LUN (%" PRIu64 " blocks)",
			  o->lba, blocks, last + 1);
		goto out;
	}
	struct pipe p = {.s = s, .lun = u->lun, .write = write, .lba = o->lba, .blocks = blocks, .bs = bs, .buf = buf};
	uint64_t chunk = (uint64_t)o->io_kib * 1024 / bs;
	p.chunk_blocks = (uint32_t)(chunk ? chunk : 1);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	progress_start(&p.prog, progress_wanted(o->quiet, o->json), write ? "wrote" : "read", blocks * bs);
	int prc = pipe_run(&p, o->depth);
	progress_end(&p.prog);
	if (prc < 0) {
		rc = cli_fail("%s", p.err);
		goto out;
	}
	if (write && ism_synchronize_cache(s, u->lun) < 0) {
		rc = cli_fail("SYNCHRONIZE CACHE: %s", ism_session_error(s));
		goto out;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (!write) {
		FILE *f = o->out ? fopen(o->out, "wb") : stdout;
		if (!f || fwrite(buf, 1, blocks * bs, f) != blocks * bs || (o->out && fclose(f) != 0)) {
			rc = cli_fail("cannot write %s: %s", o->out ? o->out : "standard output", strerror(errno));
			goto out;
		}
		if (!o->out)
			fflush(stdout);
	}
	if (o->json) {
		json_t *j = json_object();
		json_object_set_new(j, "command", jstr(write ? "write" : "read"));
		json_object_set_new(j, "lun", jnum(u->lun));
		json_object_set_new(j, "lba", jnum(o->lba));
		json_object_set_new(j, "blocks", jnum(blocks));
		json_object_set_new(j, "block_size", jnum(bs));
		json_object_set_new(j, "bytes", jnum(blocks * bs));
		json_object_set_new(j, write ? "in" : "out", jstr(write ? o->in : o->out));
		json_object_set_new(j, "usec", jnum((uint64_t)(secs * 1e6)));
		jprint(j);
	} else if ((o->out || write) && !o->quiet) {
		printf("%s %" PRIu64 " blocks of %u bytes at LBA %" PRIu64 " (%.1f MiB/s)\n", write ? "wrote" : "read",
		       blocks, bs, o->lba, secs > 0 ? (double)(blocks * bs) / secs / 1048576.0 : 0.0);
	}
out:
	cli_close_session(s);
	free(buf);
	ism_url_free(u);
	return rc;
}


int cmd_read(struct cli_opts *o, const char *url) { return transfer(o, url, false); }

int cmd_write(struct cli_opts *o, const char *url) { return transfer(o, url, true); }
