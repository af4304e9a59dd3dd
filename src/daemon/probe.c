/*
 * The LUN probe after each login: REPORT LUNS, then per LUN standard INQUIRY, the VPD pages kept
 * for `isthmus` (0x00, 0x80, 0x83) and, for a connected direct-access LUN, MODE SENSE (whether it is
 * write-protected) and READ CAPACITY(16), or READ CAPACITY(10) when that fails. The results replace the LUN cache only when the probe ran to
 * its end.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/alua.h"
#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/loopdev.h"
#include "daemon/ops.h"
#include "daemon/portals.h"
#include "daemon/pr.h"
#include "daemon/probe.h"
#include "daemon/session.h"
#include "scsi/codes.h"
#include "scsi/scsi.h"
#include "util/bytes.h"
#include "util/log.h"
#include "util/lun.h"
#include "util/sbuf.h"

enum probe_step {
	PROBE_REPORT_LUNS,
	PROBE_INQUIRY,
	PROBE_VPD_PAGES,    /* the supported pages (0x00) */
	PROBE_VPD_SERIAL,   /* unit serial number (0x80) */
	PROBE_VPD_DEVICE_ID, /* device identification (0x83) */
	PROBE_MODE_SENSE6,  /* the mode parameter header's WP bit */
	PROBE_MODE_SENSE10, /* the same where MODE SENSE(6) is not answered */
	PROBE_READ_CAPACITY16,
	PROBE_READ_CAPACITY10,
};

/* The VPD pages asked for, in step order from PROBE_VPD_PAGES; their slots in dlun.vpd. */
static const int probe_pages[] = {0x00, 0x80, 0x83};
#define PROBE_NPAGES (sizeof(probe_pages) / sizeof(probe_pages[0]))
_Static_assert(PROBE_VPD_DEVICE_ID - PROBE_VPD_PAGES + 1 == PROBE_NPAGES, "one step per VPD page");
_Static_assert(PROBE_NPAGES <= DMN_VPD_CACHED, "a cache slot per VPD page");

struct probe {
	struct dsession *s;
	struct dio io;
	enum probe_step step;
	size_t idx;
	struct dlun *luns;
	size_t nluns;
	uint8_t buf[4096];
	struct ism_session *ism;
};

static void probe_next(struct probe *p);

/* MODE SENSE(6)/(10) of every page, without block descriptors: only the mode parameter header is
 * read (SPC-4 7.5.5), whose device-specific parameter has WP in bit 7 for a direct-access LU
 * (SBC-3 6.4.1). Its offset is 2 in the 6-byte header, 3 in the 10-byte one. */
#define MODE_SENSE6 0x1a
#define MODE_SENSE10 0x5a
#define MODE_DBD 0x08
#define MODE_ALL_PAGES 0x3f
#define MODE_SENSE_ALLOC 252
#define MODE_WP 0x80

static size_t cdb_mode_sense(uint8_t *cdb, bool ten)
{
	memset(cdb, 0, ten ? 10 : 6);
	cdb[0] = ten ? MODE_SENSE10 : MODE_SENSE6;
	cdb[1] = MODE_DBD;
	cdb[2] = MODE_ALL_PAGES;
	if (ten)
		put_be16(cdb + 7, MODE_SENSE_ALLOC);
	else
		cdb[4] = MODE_SENSE_ALLOC;
	return ten ? 10 : 6;
}

static void probe_finish(struct probe *p, bool complete)
{
	struct dsession *s = p->s;
	if (complete) {
		dsess_free_luns(s->luns, s->nluns);
		s->luns = p->luns;
		s->nluns = p->nluns;
		s->probed = true;
		log_info("session %s: %zu LUN(s)", s->idstr, s->nluns);
		if (s->opts.type != DS_TYPE_INFORMATIONAL)
			dsess_expose_devices(s);
		if (s->login_op) {
			dop_done(s->d, s->login_op, json_pack("{s:s}", "session_id", s->idstr));
			s->login_op = 0;
		}
		s->interactive_login = false;
		if (!pr_register(s))
			dio_flush_queue(s);
		probe_alua(s);
	} else {
		dsess_free_luns(p->luns, p->nluns);
	}
	free(p);
}

/*
 * READ CAPACITY's answer as the devices can serve it: a block size that is a power of two from 512
 * to 64 KiB (what NBD can advertise, and what keeps a FUSE request's blocks within its buffer)
 * and a byte capacity that fits a file size (off_t). Anything else leaves the LUN without a device.
 */
static bool capacity_usable(struct dsession *s, struct dlun *l, uint64_t last_lba, uint32_t bs)
{
	if (bs < 512 || bs > 65536 || (bs & (bs - 1)) || last_lba >= (uint64_t)INT64_MAX / bs) {
		log_warn("session %s LUN %" PRIu64 ": READ CAPACITY gives %u-byte blocks up to LBA %" PRIu64
			 "; not exposed as a device", s->idstr, l->lun, bs, last_lba);
		return false;
	}
	l->capacity_bytes = (last_lba + 1) * bs;
	l->block_size = bs;
	l->have_capacity = true;
	return true;
}

/* MODE SENSE(6), or (10) when ten, answered: the WP bit into *readonly. */
static bool mode_sense_wp(bool ten, bool ok, uint32_t got, const uint8_t *buf, bool *readonly)
{
	size_t off = ten ? 3 : 2;
	if (!ok || got <= off)
		return false;
	*readonly = (buf[off] & MODE_WP) != 0;
	return true;
}

/* READ CAPACITY(16), or (10) when ten, answered: its last LBA and block size. */
static bool read_capacity_answer(bool ten, bool ok, uint32_t got, const uint8_t *buf, uint64_t *last_lba, uint32_t *bs)
{
	if (!ok || got < (ten ? 8u : 12u))
		return false;
	*last_lba = ten ? get_be32(buf) : get_be64(buf);
	*bs = get_be32(buf + (ten ? 4 : 8));
	return true;
}

static bool lun_listed(const struct probe *p, uint64_t lun)
{
	for (size_t i = 0; i < p->nluns; i++)
		if (p->luns[i].lun == lun)
			return true;
	return false;
}

static void report_luns_done(struct probe *p, bool ok, uint32_t got)
{
	if (ok && got >= 8) {
		uint32_t n = get_be32(p->buf) / 8;
		if (n > (got - 8) / 8)
			n = (got - 8) / 8;
		if (n > DMN_MAX_LUNS)
			n = DMN_MAX_LUNS;
		p->luns = xcalloc(n ? n : 1, sizeof(*p->luns));
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *e = p->buf + 8 + 8 * i;
			uint64_t lun = lun_value(e);
			if (!lun_listed(p, lun)) /* a LUN listed twice would get two devices */
				p->luns[p->nluns++].lun = lun;
		}
	}
	if (!p->nluns) {
		free(p->luns);
		p->luns = xcalloc(1, sizeof(*p->luns));
		p->nluns = 1;
	}
}

static void inquiry_done(struct probe *p, struct dlun *l, bool ok, uint32_t got)
{
	if (!ok || got < 5)
		return;
	memcpy(l->inquiry, p->buf, got > DMN_INQ_LEN ? DMN_INQ_LEN : got);
	l->inquiry_len = got > DMN_INQ_LEN ? DMN_INQ_LEN : got;
	l->have_inquiry = true;
	l->device_type = p->buf[0] & SCSI_PDT_MASK;
	if ((p->buf[0] >> SCSI_PQ_SHIFT) != SCSI_PQ_CONNECTED)
		l->device_type = SCSI_PDT_UNKNOWN; /* not connected: never a device */
}

static void vpd_done(struct probe *p, struct dlun *l, bool ok, uint32_t got)
{
	size_t k = (size_t)(p->step - PROBE_VPD_PAGES);
	if (!ok || got < 4 || p->buf[1] != probe_pages[k])
		return;
	uint32_t n = got > DMN_VPD_LEN ? DMN_VPD_LEN : got;
	l->vpd[k].page = probe_pages[k];
	l->vpd[k].len = n;
	l->vpd[k].data = xmalloc(n);
	memcpy(l->vpd[k].data, p->buf, n);
}

static void probe_cb(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct probe *p = io->priv;
	struct dsession *s = p->s;
	if (s->ism != p->ism || s->state != DS_CONNECTED) {
		/* the session went away; the next login probes again */
		probe_finish(p, false);
		return;
	}
	uint32_t got;
	bool ok = dio_good(err, r, &got);
	struct dlun *l = p->idx < p->nluns ? &p->luns[p->idx] : NULL;
	bool lun_done = false;
	switch (p->step) {
	case PROBE_REPORT_LUNS:
		report_luns_done(p, ok, got);
		p->idx = 0;
		p->step = PROBE_INQUIRY;
		break;
	case PROBE_INQUIRY:
		inquiry_done(p, l, ok, got);
		p->step = PROBE_VPD_PAGES;
		break;
	case PROBE_VPD_PAGES:
	case PROBE_VPD_SERIAL:
	case PROBE_VPD_DEVICE_ID:
		vpd_done(p, l, ok, got);
		p->step++;
		/* write protection and capacity only for a connected direct-access LUN */
		if (p->step == PROBE_MODE_SENSE6 && (!l->have_inquiry || l->device_type != SCSI_PDT_DIRECT_ACCESS))
			lun_done = true;
		break;
	case PROBE_MODE_SENSE6:
	case PROBE_MODE_SENSE10:
		/* not answered either way: writable, as far as the daemon knows; writes then fail with
		 * the target's DATA PROTECT */
		if (mode_sense_wp(p->step == PROBE_MODE_SENSE10, ok, got, p->buf, &l->readonly))
			p->step = PROBE_READ_CAPACITY16;
		else
			p->step = p->step == PROBE_MODE_SENSE6 ? PROBE_MODE_SENSE10 : PROBE_READ_CAPACITY16;
		break;
	case PROBE_READ_CAPACITY16:
	case PROBE_READ_CAPACITY10: {
		bool ten = p->step == PROBE_READ_CAPACITY10;
		uint64_t last_lba;
		uint32_t bs;
		bool answered = read_capacity_answer(ten, ok, got, p->buf, &last_lba, &bs);
		if (answered)
			capacity_usable(s, l, last_lba, bs);
		if (answered || ten)
			lun_done = true;
		else
			p->step = PROBE_READ_CAPACITY10;
		break;
	}
	}
	if (lun_done) {
		p->idx++;
		p->step = PROBE_INQUIRY;
	}
	probe_next(p);
}

static void probe_next(struct probe *p)
{
	if (p->step != PROBE_REPORT_LUNS && p->idx >= p->nluns) {
		probe_finish(p, true);
		return;
	}
	struct dsession *s = p->s;
	struct dio *io = &p->io;
	uint64_t lun = p->step != PROBE_REPORT_LUNS ? p->luns[p->idx].lun : 0;
	dio_prepare(io, s, lun, ISM_DIR_READ, p->buf, sizeof(p->buf), probe_cb, p);
	switch (p->step) {
	case PROBE_REPORT_LUNS:
		io->cdb_len = ism_cdb_report_luns(io->cdb, sizeof(p->buf));
		break;
	case PROBE_INQUIRY:
		io->cdb_len = ism_cdb_inquiry(io->cdb, -1, DMN_INQ_LEN);
		io->len = DMN_INQ_LEN;
		break;
	case PROBE_VPD_PAGES:
	case PROBE_VPD_SERIAL:
	case PROBE_VPD_DEVICE_ID:
		io->cdb_len = ism_cdb_inquiry(io->cdb, probe_pages[p->step - PROBE_VPD_PAGES], DMN_VPD_LEN);
		io->len = DMN_VPD_LEN;
		break;
	case PROBE_MODE_SENSE6:
	case PROBE_MODE_SENSE10:
		io->cdb_len = cdb_mode_sense(io->cdb, p->step == PROBE_MODE_SENSE10);
		io->len = MODE_SENSE_ALLOC;
		break;
	case PROBE_READ_CAPACITY16:
		io->cdb_len = ism_cdb_read_capacity16(io->cdb, 32);
		io->len = 32;
		break;
	case PROBE_READ_CAPACITY10:
		io->cdb_len = ism_cdb_read_capacity10(io->cdb);
		io->len = 8;
		break;
	}
	/* a lost session abandons the probe */
	if (dio_send_once(s, io) < 0)
		probe_finish(p, false);
}

void probe_start(struct dsession *s)
{
	struct probe *p = xcalloc(1, sizeof(*p));
	p->s = s;
	p->ism = s->ism;
	probe_next(p);
}

/* ------------------------------------------------------------------------------------------ */
/*
 * CAPACITY DATA HAS CHANGED (a LUN grown or shrunk at the target): READ CAPACITY(16), or (10), of
 * that LUN alone. A new size goes to the LUN cache, so to its FUSE file's size and `session show`,
 * then to its loop device.
 */
struct cap_probe {
	struct dsession *s;
	struct ism_session *ism;
	struct dio io;
	uint64_t lun;
	bool ten;
	uint8_t buf[32];
};

static void capacity_send(struct cap_probe *c);

static void capacity_cb(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct cap_probe *c = io->priv;
	struct dsession *s = c->s;
	uint32_t got;
	bool ok = dio_good(err, r, &got);
	/* a session gone or probed anew meanwhile has read the capacity itself */
	struct dlun *l = s->ism == c->ism && s->state == DS_CONNECTED ? dsess_lun(s, c->lun) : NULL;
	uint64_t last_lba;
	uint32_t bs;
	bool answered = read_capacity_answer(c->ten, ok, got, c->buf, &last_lba, &bs);
	if (l && !c->ten && !answered) {
		c->ten = true;
		capacity_send(c);
		return;
	}
	if (l && answered) {
		uint64_t before = l->capacity_bytes;
		uint32_t bs_before = l->block_size;
		bool usable = capacity_usable(s, l, last_lba, bs);
		if (usable && l->block_size != bs_before) {
			/* a device's block size cannot change under its users: keep the old capacity */
			log_warn("session %s LUN %" PRIu64 ": the block size changed from %u to %u bytes; the device keeps "
				 "its old size until the next login", s->idstr, l->lun, bs_before, l->block_size);
			l->block_size = bs_before;
			l->capacity_bytes = before;
		} else if (usable && l->capacity_bytes != before) {
			log_info("session %s LUN %" PRIu64 ": capacity changed from %" PRIu64 " to %" PRIu64 " bytes", s->idstr,
				 l->lun, before, l->capacity_bytes);
			if (l->exposed)
				loopdev_resize(s->d, s, l->lun);
		}
	}
	free(c);
}

static void capacity_send(struct cap_probe *c)
{
	dio_prepare(&c->io, c->s, c->lun, ISM_DIR_READ, c->buf, c->ten ? 8 : 32, capacity_cb, c);
	c->io.cdb_len = c->ten ? ism_cdb_read_capacity10(c->io.cdb) : ism_cdb_read_capacity16(c->io.cdb, 32);
	if (dio_send_once(c->s, &c->io) < 0)
		free(c);
}

void probe_capacity(struct dsession *s, uint64_t lun)
{
	struct dlun *l = dsess_lun(s, lun);
	if (!l || !l->have_capacity || s->state != DS_CONNECTED || !s->ism)
		return;
	struct cap_probe *c = xcalloc(1, sizeof(*c));
	c->s = s;
	c->ism = s->ism;
	c->lun = lun;
	capacity_send(c);
}

/* ------------------------------------------------------------------------------------------ */
/*
 * After a reinstatement with devices present: the write protection, capacity and block size of
 * each exposed LUN read again (MODE SENSE, READ CAPACITY), since the LUN may have been made
 * read-only or resized while the session was down. The session's I/O waits meanwhile
 * (s->refresh), so nothing is written to a LUN that has become read-only. A change of write
 * protection or block size gives the LUN's devices anew (a loop device cannot change either);
 * a new capacity alone reaches them as CAPACITY DATA HAS CHANGED does.
 */
enum refresh_step { REFRESH_MODE_SENSE6, REFRESH_MODE_SENSE10, REFRESH_READ_CAPACITY16, REFRESH_READ_CAPACITY10 };

/* Sends of one step that come back with a unit attention (a restarted target reports POWER ON
 * first). */
#define REFRESH_MAX_UA 4

struct probe_refresh {
	struct dsession *s;
	struct ism_session *ism;
	struct dio io;
	enum refresh_step step;
	size_t idx;
	int ua_tries;
	bool readonly, have_capacity;
	uint64_t last_lba;
	uint32_t bs;
	bool devices_anew;
	uint8_t buf[MODE_SENSE_ALLOC];
};

static void refresh_next(struct probe_refresh *r);

static bool unit_attention(const struct ism_scsi_result *res)
{
	uint8_t key, asc, ascq;
	return res && res->status == SCSI_CHECK_CONDITION &&
	       ism_sense_decode(res->sense, res->sense_len, &key, &asc, &ascq) && key == SK_UNIT_ATTENTION;
}

/* What was read of the LUN replaces what the cache had. */
static void refresh_apply(struct probe_refresh *r, struct dlun *l)
{
	struct dsession *s = r->s;
	if (r->readonly != l->readonly) {
		log_info("session %s LUN %" PRIu64 ": now %s", s->idstr, l->lun,
			 r->readonly ? "write-protected (read-only)" : "writable");
		l->readonly = r->readonly;
		r->devices_anew = true;
	}
	struct dlun now = {.lun = l->lun};
	if (!r->have_capacity || !capacity_usable(s, &now, r->last_lba, r->bs))
		return;
	if (now.block_size != l->block_size) {
		log_info("session %s LUN %" PRIu64 ": block size changed from %u to %u bytes", s->idstr, l->lun,
			 l->block_size, now.block_size);
		r->devices_anew = true;
	} else if (now.capacity_bytes != l->capacity_bytes) {
		log_info("session %s LUN %" PRIu64 ": capacity changed from %" PRIu64 " to %" PRIu64 " bytes", s->idstr,
			 l->lun, l->capacity_bytes, now.capacity_bytes);
		if (l->exposed && !r->devices_anew)
			loopdev_resize(s->d, s, l->lun);
	}
	l->block_size = now.block_size;
	l->capacity_bytes = now.capacity_bytes;
}

static void refresh_finish(struct probe_refresh *r, bool complete)
{
	struct dsession *s = r->s;
	if (s->refresh == r)
		s->refresh = NULL;
	if (complete) {
		if (r->devices_anew) {
			dsess_remove_devices(s);
			dsess_expose_devices(s);
		}
		if (!pr_register(s))
			dio_flush_later(s);
		probe_alua(s);
	}
	free(r);
}

static void refresh_cb(struct dio *io, int err, const struct ism_scsi_result *res)
{
	struct probe_refresh *r = io->priv;
	struct dsession *s = r->s;
	if (s->refresh != r || s->ism != r->ism || s->state != DS_CONNECTED) {
		refresh_finish(r, false); /* the next login reads them again */
		return;
	}
	uint32_t got;
	bool ok = dio_good(err, res, &got);
	if (!ok && unit_attention(res) && ++r->ua_tries < REFRESH_MAX_UA) {
		refresh_next(r);
		return;
	}
	r->ua_tries = 0;
	struct dlun *l = &s->luns[r->idx];
	bool lun_done = false;
	switch (r->step) {
	case REFRESH_MODE_SENSE6:
	case REFRESH_MODE_SENSE10:
		if (mode_sense_wp(r->step == REFRESH_MODE_SENSE10, ok, got, r->buf, &r->readonly))
			r->step = REFRESH_READ_CAPACITY16;
		else
			r->step = r->step == REFRESH_MODE_SENSE6 ? REFRESH_MODE_SENSE10 : REFRESH_READ_CAPACITY16;
		break;
	case REFRESH_READ_CAPACITY16:
	case REFRESH_READ_CAPACITY10: {
		bool ten = r->step == REFRESH_READ_CAPACITY10;
		r->have_capacity = read_capacity_answer(ten, ok, got, r->buf, &r->last_lba, &r->bs);
		if (r->have_capacity || ten)
			lun_done = true;
		else
			r->step = REFRESH_READ_CAPACITY10;
		break;
	}
	}
	if (lun_done) {
		refresh_apply(r, l);
		r->idx++;
		r->step = REFRESH_MODE_SENSE6;
	}
	refresh_next(r);
}

static void refresh_next(struct probe_refresh *r)
{
	struct dsession *s = r->s;
	while (r->idx < s->nluns && !s->luns[r->idx].exposed)
		r->idx++;
	if (r->idx >= s->nluns) {
		refresh_finish(r, true);
		return;
	}
	if (r->step == REFRESH_MODE_SENSE6 && !r->ua_tries) {
		/* a LUN not answering MODE SENSE keeps what it had */
		r->readonly = s->luns[r->idx].readonly;
		r->have_capacity = false;
	}
	struct dio *io = &r->io;
	bool rc16 = r->step == REFRESH_READ_CAPACITY16;
	switch (r->step) {
	case REFRESH_MODE_SENSE6:
	case REFRESH_MODE_SENSE10:
		dio_prepare(io, s, s->luns[r->idx].lun, ISM_DIR_READ, r->buf, MODE_SENSE_ALLOC, refresh_cb, r);
		io->cdb_len = cdb_mode_sense(io->cdb, r->step == REFRESH_MODE_SENSE10);
		break;
	case REFRESH_READ_CAPACITY16:
	case REFRESH_READ_CAPACITY10:
		dio_prepare(io, s, s->luns[r->idx].lun, ISM_DIR_READ, r->buf, rc16 ? 32 : 8, refresh_cb, r);
		io->cdb_len = rc16 ? ism_cdb_read_capacity16(io->cdb, 32) : ism_cdb_read_capacity10(io->cdb);
		break;
	}
	if (dio_send_once(s, io) < 0) {
		refresh_finish(r, false);
		dio_flush_later(s); /* what waited goes as far as the session lets it */
	}
}

void probe_refresh(struct dsession *s)
{
	struct probe_refresh *r = xcalloc(1, sizeof(*r));
	r->s = s;
	r->ism = s->ism;
	s->refresh = r;
	refresh_next(r);
}
