/*
 * Persistent reservation state that must survive power loss (SPC-4 5.13.4, APTPL). Only the
 * state of a LU whose last REGISTER asked for APTPL is written; changes made without it never
 * touch the disk.
 *
 * Files, in state_dir, named by the LU's identity (its NAA designator, VPD page 83h), so LUs of
 * different targets never share one:
 *   naa.<32 hex digits>.pr    a snapshot of the whole state, with the target name and LUN it
 *                             belongs to and the sequence number of the last change it holds;
 *   naa.<32 hex digits>.prj   the changes since, as batches appended to the file, each with its
 *                             sequence number, length and checksum.
 * A batch holds the change records of every PERSISTENT RESERVE OUT queued while the previous
 * write was in flight: one write and one fdatasync for all of them, on an offload worker, and
 * those commands complete once it is durable. When the journal outgrows the state it describes
 * (or after an error, or the first time), the next write is a fresh snapshot instead: a new file
 * (O_EXCL, O_NOFOLLOW, 0600) synced and renamed over the old one, the directory synced, then the
 * journal emptied. Loading replays the batches newer than the snapshot and stops at the first
 * incomplete one: a torn tail belongs to commands that never completed.
 *
 * A store that keeps state with its medium (store_ops state_put: an RBD image's object in the
 * cluster) holds the snapshot instead, with no journal: every write replaces it whole (the
 * store makes that atomic), so the state survives the loss of this machine, and the state
 * directory is not involved.
 *
 * Threads: a PERSISTENT RESERVE OUT runs on its own context's thread under the LU's lock, which
 * also guards everything here but the open journal (a worker's while its write is in flight).
 * The records go to pending in the order the changes were made; the writes are submitted and
 * reaped only on the home thread (the target's first context's, whose workers they run on),
 * one at a time, so the files see the changes in that order. A command of another thread posts
 * a kick home; each command completes on its own context's thread. A LU is added and removed
 * on the home thread with the other loops paused: once it is gone (orphan) only the home thread
 * touches what is left here.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "scsi/scsi_int.h"
#include "util/log.h"
#include "util/parse.h"
#include "util/sbuf.h"
#include "util/hex.h"

/* Largest state file read back: far above what PR_MAX_REGISTRATIONS can produce. */
#define PR_FILE_MAX (64u << 20)
/* The journal is compacted into a snapshot once it is this large and twice the state's size. */
#define PR_JOURNAL_COMPACT (1u << 20)

struct pr_job;

struct pr_persist {
	struct store *st;         /* keeps the snapshot with its medium; NULL: files in dir */
	char *dir;
	char *base;               /* dir/naa.<hex>: the files are base.pr and base.prj */
	char *ident;              /* "<escaped target name> <lun>", recorded in the snapshot */
	struct pr_state *pr;      /* the LU's state, or kept below once the LU is gone */
	struct scsi_lu *lu;       /* whose lock guards this; NULL once the LU is gone */
	int jfd;                  /* the journal, opened by a worker; -1 before */
	uint64_t seq;             /* of the last batch or snapshot queued */
	uint64_t journal_bytes;   /* in the journal since the last snapshot */
	struct sbuf pending;      /* change records not yet handed to a worker */
	struct scsi_cmd *waiting, *waiting_tail; /* their commands */
	struct pr_job *job;       /* the write in flight, NULL when idle */
	struct offload *offload;  /* outlives the target (scsi_target_set_offload) */
	bool need_snapshot;       /* the next write must be a snapshot */
	bool failing;             /* the last write failed (logged once until one succeeds) */
	bool orphan;              /* the LU is gone: free once idle */
	bool kick_posted;         /* a command of another thread asked home to start a write */
	/*
	 * A LU removed while its writes are in flight leaves its state here, the newest there is,
	 * and is on the orphans list: a LU added again under the same identity (a replaced LUN)
	 * takes state and writer over rather than reading files that are still being written.
	 */
	struct pr_state kept;
	struct pr_persist *next_orphan;
};

static struct pr_persist *orphans;

struct pr_job {
	struct offload_job job;
	struct pr_persist *pp;
	struct sbuf data;         /* a batch, or a whole snapshot */
	struct store *st;         /* the snapshot goes to this store (a job of it while in flight) */
	bool snapshot;
	struct scsi_cmd *cmds;    /* complete once data is durable */
	int rc;
};

/* ---- snapshot ---- */

void pr_regs_put(struct sbuf *b, const struct pr_state *pr)
{
	size_t holder = SIZE_MAX;

	for (size_t i = 0; i < pr->nregs; i++) {
		if (pr->holder == pr->regs[i])
			holder = i;
	}
	if (pr->held && (pr_all_registrants(pr->type) || holder == SIZE_MAX))
		sbuf_printf(b, "reservation %u -\n", pr->type);
	else if (pr->held)
		sbuf_printf(b, "reservation %u %zu\n", pr->type, holder);
	for (size_t i = 0; i < pr->nregs; i++) {
		const struct pr_reg *g = pr->regs[i];

		sbuf_printf(b, "reg %016" PRIx64 " %u %d ", g->key, g->rel_port, g->all_tg_pt);
		pr_name_put(b, g->port);
		sbuf_putc(b, '\n');
	}
}

static void build_snapshot(const struct pr_persist *pp, const struct pr_state *pr, uint64_t seq, struct sbuf *b)
{
	sbuf_printf(b, "isthmus-pr 2\nlu %s\nseq %" PRIu64 "\ngeneration %" PRIu32 "\naptpl %d\n", pp->ident, seq,
		    pr->generation, pr->aptpl);
	pr_regs_put(b, pr);
	sbuf_printf(b, "end %016" PRIx64 "\n", pr_fnv64(b->data, b->len));
}

/* Next line of text[*pos..len) as a NUL-terminated string (modifies text); NULL at the end. */
static char *next_line(char *text, size_t len, size_t *pos)
{
	char *line = text + *pos, *nl;

	if (*pos >= len)
		return NULL;
	nl = memchr(line, '\n', len - *pos);
	if (!nl)
		return NULL;
	*nl = 0;
	*pos = (size_t)(nl - text) + 1;
	return line;
}

static bool snapshot_bad(const char *path, const char *why, char **err)
{
	*err = xasprintf("%s: malformed reservation state: %s", path, why);
	return false;
}

static bool parse_snapshot(const struct pr_persist *pp, struct pr_state *pr, const char *path, char *text, size_t len,
			   uint64_t *seq, char **err)
{
	size_t pos = 0, end_at;
	char *line, *f[8], port[256];
	uint64_t v, key, rel, atp, type = 0, holder = UINT64_MAX;
	bool held = false;
	char *end = NULL;

	/* The checksum covers everything before the "end" line. */
	for (end_at = len; end_at > 0 && text[end_at - 1] == '\n'; end_at--)
		;
	while (end_at > 0 && text[end_at - 1] != '\n')
		end_at--;
	if (len - end_at < 5 || strncmp(text + end_at, "end ", 4) != 0)
		return snapshot_bad(path, "no end line (truncated)", err);
	end = text + end_at + 4;
	if (strchr(end, '\n'))
		*strchr(end, '\n') = 0;
	if (!pr_parse_u64(end, 16, UINT64_MAX, &v) || v != pr_fnv64(text, end_at))
		return snapshot_bad(path, "checksum mismatch", err);
	len = end_at;
	if (!(line = next_line(text, len, &pos)) || strcmp(line, "isthmus-pr 2") != 0)
		return snapshot_bad(path, "unknown format", err);
	if (!(line = next_line(text, len, &pos)) || strncmp(line, "lu ", 3) != 0 || strcmp(line + 3, pp->ident) != 0)
		return snapshot_bad(path, "it belongs to another logical unit", err);
	while ((line = next_line(text, len, &pos))) {
		int n = pr_record_fields(line, f, 6);

		if (n == 2 && strcmp(f[0], "seq") == 0 && pr_parse_u64(f[1], 10, UINT64_MAX, seq))
			continue;
		if (n == 2 && strcmp(f[0], "generation") == 0 && pr_parse_u64(f[1], 10, UINT32_MAX, &v)) {
			pr->generation = (uint32_t)v;
			continue;
		}
		if (n == 2 && strcmp(f[0], "aptpl") == 0 && pr_parse_u64(f[1], 10, 1, &v)) {
			pr->aptpl = v;
			continue;
		}
		if (n == 3 && strcmp(f[0], "reservation") == 0 && pr_parse_u64(f[1], 10, 255, &type) &&
		    pr_type_valid((uint8_t)type) &&
		    (strcmp(f[2], "-") == 0 || pr_parse_u64(f[2], 10, PR_MAX_REGISTRATIONS, &holder))) {
			held = true;
			continue;
		}
		if (n == 5 && strcmp(f[0], "reg") == 0 && pr_parse_u64(f[1], 16, UINT64_MAX, &key) &&
		    pr_parse_u64(f[2], 10, 0xffff, &rel) && pr_parse_u64(f[3], 10, 1, &atp) &&
		    pr_name_get(f[4], port, sizeof(port)) && !pr_find_exact(pr, port, (uint16_t)rel, atp) &&
		    pr_add_reg(pr, port, (uint16_t)rel, atp, key))
			continue;
		return snapshot_bad(path, "malformed line", err);
	}
	if (held) {
		bool ar = pr_all_registrants((uint8_t)type);
		if (ar != (holder == UINT64_MAX) || (!ar && holder >= pr->nregs))
			return snapshot_bad(path, "the reservation holder is not registered", err);
		pr->held = true;
		pr->type = (uint8_t)type;
		pr->holder = ar ? NULL : pr->regs[holder];
	}
	return true;
}

/* Replays the journal's batches newer than seq; stops quietly at a torn or foreign tail. */
static void replay_journal(const struct pr_persist *pp, struct pr_state *pr, char *text, size_t len, uint64_t *seq)
{
	size_t pos = 0;

	while (pos < len) {
		char *line, *f[5];
		uint64_t bseq, blen, sum;
		size_t start;

		if (!(line = next_line(text, len, &pos)) || pr_record_fields(line, f, 4) != 4 || strcmp(f[0], "batch") != 0 ||
		    !pr_parse_u64(f[1], 10, UINT64_MAX, &bseq) || !pr_parse_u64(f[2], 10, PR_FILE_MAX, &blen) ||
		    !pr_parse_u64(f[3], 16, UINT64_MAX, &sum) || blen > len - pos || pr_fnv64(text + pos, blen) != sum)
			break;
		start = pos;
		pos += blen;
		if (bseq <= *seq)
			continue; /* already in the snapshot */
		if (bseq != *seq + 1)
			break;
		size_t at = start;
		while (at < start + blen) {
			if (!(line = next_line(text, start + blen, &at)) || !pr_apply_record(pr, line)) {
				log_error("%s.prj: batch %" PRIu64 " does not apply to the saved state; later changes "
					  "are lost", pp->base, bseq);
				return;
			}
		}
		*seq = bseq;
	}
	if (pos < len)
		log_warn("%s.prj: %zu bytes after the last complete batch ignored (written when the target "
			 "stopped, by commands that never completed)", pp->base, len - pos);
}

/* Reads a whole file (NUL-terminated, no more than PR_FILE_MAX); -errno, -ENOENT when missing. */
static int read_file(const char *path, struct sbuf *b)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;

	if (fd < 0)
		return errno == ENOTDIR ? -ENOENT : -errno; /* nothing saved there; writes will say why */
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)PR_FILE_MAX) {
		close(fd);
		return -EINVAL;
	}
	for (;;) {
		sbuf_reserve(b, 65536);
		ssize_t n = read(fd, b->data + b->len, b->cap - b->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		if (n == 0)
			break;
		b->len += (size_t)n;
		if (b->len > PR_FILE_MAX) {
			close(fd);
			return -EFBIG;
		}
	}
	close(fd);
	sbuf_cstr(b);
	return 0;
}

static struct pr_persist *persist_new(struct scsi_lu *lu, struct store *st)
{
	struct pr_persist *pp = xcalloc(1, sizeof(*pp));
	struct sbuf id = { 0 };
	uint8_t naa[16];

	if (st) {
		/* Named for messages (and a replaced LU's match) by the medium's object. */
		sbuf_printf(&id, "%s (%s)", st->path, st->ops->state_name(st));
	} else {
		lu_naa_designator(lu, naa);
		sbuf_printf(&id, "%s/naa.", lu->state_dir);
		for (size_t i = 0; i < sizeof(naa); i++)
			sbuf_printf(&id, "%02x", naa[i]);
	}
	pp->base = xstrdup(sbuf_cstr(&id));
	sbuf_reset(&id);
	pr_name_put(&id, lu->t->name[0] ? lu->t->name : "-");
	sbuf_printf(&id, " %u", lu->lun);
	pp->ident = xstrdup(sbuf_cstr(&id));
	sbuf_free(&id);
	pp->st = st;
	pp->dir = st ? NULL : xstrdup(lu->state_dir);
	pp->jfd = -1;
	pp->need_snapshot = true;
	pp->pr = &lu->pr;
	pp->lu = lu;
	pp->offload = target_home_offload(lu->t);
	return pp;
}

static void persist_free(struct pr_persist *pp)
{
	for (struct pr_persist **o = &orphans; *o; o = &(*o)->next_orphan) {
		if (*o == pp) {
			*o = pp->next_orphan;
			break;
		}
	}
	pr_free(&pp->kept);
	if (pp->jfd >= 0)
		close(pp->jfd);
	sbuf_free(&pp->pending);
	free(pp->dir);
	free(pp->base);
	free(pp->ident);
	free(pp);
}

/* The LU comes back while its predecessor's writes are in flight: it continues from there. */
static void persist_adopt(struct scsi_lu *lu, struct pr_persist *pp)
{
	struct pr_state *pr = &lu->pr;

	for (struct pr_persist **o = &orphans; *o; o = &(*o)->next_orphan) {
		if (*o == pp) {
			*o = pp->next_orphan;
			break;
		}
	}
	pp->orphan = false;
	pp->lu = lu;
	if (pp->st)
		pp->st = lu->st; /* the writes in flight hold the old store; the next ones go to the new */
	*pr = pp->kept;
	memset(&pp->kept, 0, sizeof(pp->kept));
	pp->pr = pr;
	pr->persist = pp;
	pr->log = &pp->pending;
}

/*
 * The snapshot a store keeps with its medium. One saved for another LU (the image served by
 * another target or LUN number before) is not this LU's to take: it starts empty, says so, and
 * its first APTPL change replaces it.
 */
static int load_from_medium(struct pr_persist *pp, struct pr_state *pr, uint64_t *seq, char **err)
{
	char *text = NULL, *owner;
	size_t len = 0;
	int rc = pp->st->ops->state_get(pp->st, &text, &len);

	if (rc == -ENOENT)
		return 0;
	if (rc < 0) {
		*err = xasprintf("%s: %s", pp->base, strerror(-rc));
		return rc;
	}
	owner = strstr(text, "\nlu ");
	size_t n = strlen(pp->ident);
	if (owner && strncmp(owner + 4, pp->ident, n) == 0 && owner[4 + n] == '\n') {
		rc = parse_snapshot(pp, pr, pp->base, text, len, seq, err) ? 0 : -EINVAL;
	} else {
		char *eol = owner ? strchr(owner + 4, '\n') : NULL;
		log_warn("%s: the reservation state there was saved for another logical unit (%.*s); this one "
			 "(%s) starts without reservations and replaces it at its first change with APTPL", pp->base,
			 owner && eol ? (int)(eol - owner - 4) : 1, owner && eol ? owner + 4 : "?", pp->ident);
	}
	free(text);
	return rc;
}

/* The state directory's snapshot and journal. */
static int load_from_files(struct pr_persist *pp, struct pr_state *pr, uint64_t *seq, char **err)
{
	struct sbuf snap = { 0 }, journal = { 0 };
	char *path = xasprintf("%s.pr", pp->base);
	int rc = read_file(path, &snap);

	if (rc == 0 && !parse_snapshot(pp, pr, path, (char *)snap.data, snap.len, seq, err)) {
		rc = -EINVAL;
	} else if (rc < 0 && rc != -ENOENT) {
		*err = xasprintf("%s: %s", path, strerror(-rc));
	}
	free(path);
	if (rc == 0) {
		path = xasprintf("%s.prj", pp->base);
		rc = read_file(path, &journal);
		if (rc == 0)
			replay_journal(pp, pr, (char *)journal.data, journal.len, seq);
		else if (rc != -ENOENT)
			*err = xasprintf("%s: %s", path, strerror(-rc));
		free(path);
		if (rc == -ENOENT)
			rc = 0;
	} else if (rc == -ENOENT) {
		rc = 0;
	}
	sbuf_free(&snap);
	sbuf_free(&journal);
	return rc;
}

int pr_load(struct scsi_lu *lu, char **err)
{
	struct pr_state *pr = &lu->pr;
	struct store *on_medium = lu->st && lu->st->ops->state_put ? lu->st : NULL;
	struct pr_persist *pp;
	uint64_t seq = 0;
	char *old;
	int rc;

	memset(pr, 0, sizeof(*pr));
	if (!lu->state_dir && !on_medium)
		return 0;
	pp = persist_new(lu, on_medium);
	for (struct pr_persist *o = orphans; o; o = o->next_orphan) {
		if (strcmp(o->base, pp->base) == 0 && strcmp(o->ident, pp->ident) == 0) {
			persist_free(pp);
			persist_adopt(lu, o);
			return 0;
		}
	}
	if (on_medium) {
		rc = load_from_medium(pp, pr, &seq, err);
	} else {
		/* lu-<LUN>.pr, keyed by the LUN number alone, is shared by every target's LUN: never loaded. */
		old = xasprintf("%s/lu-%u.pr", lu->state_dir, lu->lun);
		if (access(old, F_OK) == 0)
			log_warn("%s: reservation state saved by an older version under the LUN number alone, "
				 "which cannot tell whose LU it was; ignored (remove it once no longer wanted)", old);
		free(old);
		rc = load_from_files(pp, pr, &seq, err);
	}
	if (rc < 0) {
		pr_free(pr);
		persist_free(pp);
		pr->persist = NULL;
		return -1;
	}
	if (!pr->aptpl) {
		/* Saved without persist-through-power-loss: nothing survives a restart. */
		pr_free(pr);
		pr->generation = 0;
	}
	pp->seq = seq;
	pr->persist = pp;
	pr->log = &pp->pending;
	return 0;
}

/* ---- writing, on a worker ---- */

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *dir)
{
	char *p = xstrdup(dir);
	int rc = 0;

	for (char *s = p + 1; ; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;
		*s = 0;
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return rc;
}

static int open_journal(struct pr_persist *pp, bool *created)
{
	char *path = xasprintf("%s.prj", pp->base);
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);

	*created = fd >= 0;
	if (fd < 0 && errno == EEXIST)
		fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return -errno;
	pp->jfd = fd;
	return 0;
}

/*
 * A snapshot: a fresh temporary file (a leftover from a crash is removed first; O_EXCL and
 * O_NOFOLLOW so nothing planted there is followed), synced, renamed over the old snapshot, the
 * directory synced; then the journal, whose batches the snapshot now holds, is emptied.
 */
static int write_snapshot(struct pr_persist *pp, const struct sbuf *b)
{
	char *tmp = xasprintf("%s.pr.tmp", pp->base), *path = xasprintf("%s.pr", pp->base);
	bool created = false;
	int fd, rc = make_dirs(pp->dir);

	if (rc == 0 && unlink(tmp) < 0 && errno != ENOENT)
		rc = -errno;
	if (rc == 0) {
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0) {
			rc = -errno;
		} else {
			rc = write_all(fd, b->data, b->len);
			if (rc == 0 && fsync(fd) < 0)
				rc = -errno;
			close(fd);
			if (rc == 0 && rename(tmp, path) < 0)
				rc = -errno;
			if (rc < 0)
				unlink(tmp);
		}
	}
	if (rc == 0 && pp->jfd < 0)
		rc = open_journal(pp, &created);
	if (rc == 0 && ftruncate(pp->jfd, 0) < 0)
		rc = -errno;
	if (rc == 0)
		rc = sync_dir(pp->dir);
	free(tmp);
	free(path);
	return rc;
}

static int append_batch(struct pr_persist *pp, const struct sbuf *b)
{
	int rc = 0;
	bool created = false;

	if (pp->jfd < 0 && (rc = open_journal(pp, &created)) < 0)
		return rc;
	rc = write_all(pp->jfd, b->data, b->len);
	if (rc == 0 && fdatasync(pp->jfd) < 0)
		rc = -errno;
	if (rc == 0 && created)
		rc = sync_dir(pp->dir);
	return rc;
}

static void job_work(struct offload_job *j)
{
	struct pr_job *pj = (struct pr_job *)j;

	if (pj->st)
		pj->rc = pj->st->ops->state_put(pj->st, pj->data.data, pj->data.len);
	else
		pj->rc = pj->snapshot ? write_snapshot(pj->pp, &pj->data) : append_batch(pj->pp, &pj->data);
}

/* The write is over: its store may close now (lu_free left that to the last of its jobs). */
static void job_free(struct pr_job *pj)
{
	if (pj->st && --pj->st->jobs == 0 && pj->st->closing)
		store_close(pj->st);
	sbuf_free(&pj->data);
	free(pj);
}

/* ---- queueing: records under the LU's lock, writes on the home thread ---- */

static void cmd_finish_here(void *arg)
{
	struct scsi_cmd *c = arg;

	c->defer.active = false;
	c->done(c);
}

/* The write of these commands is over: each completes on its own context's thread. */
static void complete_cmds(struct scsi_cmd *c, int rc)
{
	while (c) {
		struct scsi_cmd *next = c->defer.wait_next;

		c->defer.wait_next = NULL;
		if (rc < 0 && !atomic_load(&c->defer.cancelled)) {
			c->status = SCSI_CHECK_CONDITION;
			c->sense_len = (uint8_t)scsi_sense_build(c->sense, sizeof(c->sense), c->defer.desc, SK_MEDIUM_ERROR,
								 0x0c, 0x00, NULL, NULL);
		}
		if (!c->defer.ctx || th_here(&c->defer.ctx->thread))
			cmd_finish_here(c);
		else
			th_post(&c->defer.ctx->thread, cmd_finish_here, c);
		c = next;
	}
}

/* What is queued now becomes one write: a batch of the pending records, or a snapshot. */
static struct pr_job *take_job(struct pr_persist *pp)
{
	struct pr_job *pj = xcalloc(1, sizeof(*pj));
	const struct pr_state *pr = pp->pr;
	size_t state_bytes = 4096 + pr->nregs * 128u;

	pj->pp = pp;
	pj->cmds = pp->waiting;
	pp->waiting = pp->waiting_tail = NULL;
	if (pp->st) {
		/* Held open by this write until it is over (lu_free leaves the close to job_done). */
		pj->st = pp->st;
		pj->st->jobs++;
	}
	if (pp->st || pp->need_snapshot || (pp->journal_bytes > PR_JOURNAL_COMPACT && pp->journal_bytes > 2 * state_bytes)) {
		pj->snapshot = true;
		build_snapshot(pp, pr, ++pp->seq, &pj->data);
	} else {
		sbuf_printf(&pj->data, "batch %" PRIu64 " %zu %016" PRIx64 "\n", ++pp->seq, pp->pending.len,
			    pr_fnv64(pp->pending.data, pp->pending.len));
		sbuf_append(&pj->data, pp->pending.data, pp->pending.len);
	}
	sbuf_reset(&pp->pending);
	return pj;
}

static void job_done(struct offload_job *j);

/* The next write, made of what is queued (the LU's lock held while it has one): pp->job. */
static struct pr_job *next_job(struct pr_persist *pp)
{
	struct pr_job *pj = take_job(pp);

	pj->job.work = job_work;
	pj->job.done = job_done;
	pj->job.key = pp;
	pp->job = pj;
	return pj;
}

static void job_finish(struct pr_persist *pp, struct pr_job *pj)
{
	if (pj->rc < 0) {
		if (!pp->failing)
			log_error("%s: saving persistent reservation state: %s (PERSISTENT RESERVE OUT with "
				  "APTPL fails until it works again)", pp->base, strerror(-pj->rc));
		pp->failing = true;
		pp->need_snapshot = true; /* the journal may end in a torn batch: start over */
		return;
	}
	if (pp->failing)
		log_info("%s: persistent reservation state saved again", pp->base);
	pp->failing = false;
	if (pj->snapshot) {
		pp->need_snapshot = false;
		pp->journal_bytes = 0;
	} else {
		pp->journal_bytes += pj->data.len;
	}
}

/* On the home thread: the LU's lock while the LU is there (once it is gone, only this thread). */
static struct scsi_lu *home_lock(struct pr_persist *pp)
{
	struct scsi_lu *lu = pp->lu;

	if (lu)
		lu_lock(lu);
	return lu;
}

static void home_unlock(struct scsi_lu *lu)
{
	if (lu)
		lu_unlock(lu);
}

/* On the home thread, from offload_reap: the write is durable (or failed); the next one goes. */
static void job_done(struct offload_job *j)
{
	struct pr_job *pj = (struct pr_job *)j;
	struct pr_persist *pp = pj->pp;
	struct scsi_lu *lu = home_lock(pp);
	struct offload *o = pp->offload; /* commands set it under the lock */
	struct pr_job *next = NULL;

	pp->job = NULL;
	job_finish(pp, pj);
	if (pp->waiting)
		next = next_job(pp);
	home_unlock(lu);
	complete_cmds(pj->cmds, pj->rc);
	job_free(pj);
	if (next)
		offload_submit(o, &next->job);
	else if (pp->orphan && !pp->kick_posted)
		persist_free(pp);
}

/* On the home thread: a command of another thread queued records while no write was in flight. */
static void persist_kick(void *arg)
{
	struct pr_persist *pp = arg;
	struct scsi_lu *lu = home_lock(pp);
	struct offload *o = pp->offload;
	struct pr_job *next = NULL;

	pp->kick_posted = false;
	if (!pp->job && pp->waiting)
		next = next_job(pp);
	home_unlock(lu);
	if (next)
		offload_submit(o, &next->job);
	else if (pp->orphan && !pp->job)
		persist_free(pp);
}

void pr_persist_begin(struct scsi_lu *lu, struct pr_mark *m)
{
	const struct pr_state *pr = &lu->pr;

	m->log_len = pr->log ? pr->log->len : 0;
	m->generation = pr->generation;
	m->aptpl = pr->aptpl;
	m->held = pr->held;
	m->type = pr->type;
	m->holder = pr->holder;
}

void pr_persist_commit(struct scsi_req *r, const struct pr_mark *m)
{
	struct pr_state *pr = &r->lu->pr;
	struct pr_persist *pp = pr->persist;
	struct scsi_cmd *cmd = r->cmd;

	if (!pp)
		return;
	bool changed = pp->pending.len != m->log_len || pr->generation != m->generation || pr->aptpl != m->aptpl ||
		       pr->held != m->held || (pr->held && (pr->type != m->type || pr->holder != m->holder));
	if (!changed)
		return;
	if (!m->aptpl && !pr->aptpl) {
		/* Nothing of this LU is to survive power loss: the disk is not involved. */
		pp->pending.len = m->log_len;
		return;
	}
	pr_log_tail(pr);
	if (!m->aptpl)
		pp->need_snapshot = true; /* what the files hold predates this APTPL period */
	pp->offload = target_home_offload(r->t); /* one writer thread per LU: the first context's */
	if (!pp->offload) {
		/* No workers (tests, tools): write it here, and the command completes after. */
		struct pr_job *pj = take_job(pp);
		job_work(&pj->job);
		job_finish(pp, pj);
		if (pj->rc < 0)
			req_sense(r, SK_MEDIUM_ERROR, 0x0c, 0x00);
		job_free(pj);
		return;
	}
	/* Done once durable: the records wait for the write in flight, or go now. */
	cmd->defer.active = true;
	cmd->defer.waited = true;
	cmd->defer.desc = r->lu->d_sense;
	cmd->defer.wait_next = NULL;
	if (pp->waiting_tail)
		pp->waiting_tail->defer.wait_next = cmd;
	else
		pp->waiting = cmd;
	pp->waiting_tail = cmd;
	if (pp->job || pp->kick_posted)
		return; /* the write in flight, or the kick on its way, takes these records too */
	const struct scsi_port_thread *home = &r->t->ctxs->thread; /* whose offload this is */
	if (th_here(home)) {
		offload_submit(pp->offload, &next_job(pp)->job);
		return;
	}
	pp->kick_posted = true;
	th_post(home, persist_kick, pp);
}

void pr_persist_release(struct scsi_lu *lu)
{
	struct pr_persist *pp = lu->pr.persist;

	if (!pp)
		return;
	lu->pr.persist = NULL;
	lu->pr.log = NULL;
	pp->lu = NULL;
	if (!pp->job && !pp->kick_posted) {
		pp->pr = NULL;
		persist_free(pp);
		return;
	}
	/* Writes in flight or asked for: they finish, with the state they may still need (the last
	 * of job_done and persist_kick frees it). */
	pp->kept = lu->pr;
	pp->kept.log = &pp->pending;
	memset(&lu->pr, 0, sizeof(lu->pr));
	pp->pr = &pp->kept;
	pp->orphan = true;
	pp->next_orphan = orphans;
	orphans = pp;
}
