/*
 * The LUN probe after each login: REPORT LUNS, then per LUN standard INQUIRY, the VPD pages kept
 * for `isthmus` (0x00, 0x80, 0x83) and, for a connected direct-access LUN, READ CAPACITY(16), or
 * READ CAPACITY(10) when that fails. The results replace the LUN cache only when the probe ran to
 * its end.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/alua.h"
#include "daemon/daemon.h"
#include "daemon/io.h"
#include "daemon/libbridge.h"
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
	bool ok = err == 0 && r && r->status == SCSI_GOOD;
	uint32_t got = ok ? r->transferred : 0;
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
		/* capacity only for a connected direct-access LUN */
		if (p->step == PROBE_READ_CAPACITY16 && (!l->have_inquiry || l->device_type != SCSI_PDT_DIRECT_ACCESS))
			lun_done = true;
		break;
	case PROBE_READ_CAPACITY16:
		if (ok && got >= 12) {
			capacity_usable(s, l, get_be64(p->buf), get_be32(p->buf + 8));
			lun_done = true;
		} else {
			p->step = PROBE_READ_CAPACITY10;
		}
		break;
	case PROBE_READ_CAPACITY10:
		if (ok && got >= 8)
			capacity_usable(s, l, get_be32(p->buf), get_be32(p->buf + 4));
		lun_done = true;
		break;
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
	struct dio *io = &p->io;
	memset(io, 0, sizeof(*io));
	io->priv = p;
	io->done = probe_cb;
	io->dir = ISM_DIR_READ;
	io->buf = p->buf;
	io->len = sizeof(p->buf);
	io->lun = p->step != PROBE_REPORT_LUNS ? p->luns[p->idx].lun : 0;
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
	case PROBE_READ_CAPACITY16:
		io->cdb_len = ism_cdb_read_capacity16(io->cdb, 32);
		io->len = 32;
		break;
	case PROBE_READ_CAPACITY10:
		io->cdb_len = ism_cdb_read_capacity10(io->cdb);
		io->len = 8;
		break;
	}
	struct dsession *s = p->s;
	io->s = s;
	io->seq = ++s->next_seq;
	io->resend = DIO_ONCE; /* a lost session abandons the probe */
	if (!s->ism || dio_send_now(s, io) < 0) {
		probe_finish(p, false);
		return;
	}
	lib_settle_soon(s);
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
 * The ALUA probe after each login, on the first LUN whose standard INQUIRY reports TPGS != 0:
 * Device Identification (0x83) through this portal names its target port group and relative
 * target port, then REPORT TARGET PORT GROUPS gives every group's state. A target without it
 * (ILLEGAL REQUEST, or any other failure) leaves the groups' states unknown.
 */
enum alua_step { ALUA_STEP_VPD83, ALUA_STEP_RTPG };

struct alua_probe {
	struct dsession *s;
	struct ism_session *ism;
	struct dio io;
	enum alua_step step;
	uint64_t lun;
	int tpg, rel_port;
	uint8_t buf[RTPG_ALLOC];
};

static void alua_send(struct alua_probe *a);

static void alua_cb(struct dio *io, int err, const struct ism_scsi_result *r)
{
	struct alua_probe *a = io->priv;
	struct dsession *s = a->s;
	bool ok = err == 0 && r && r->status == SCSI_GOOD;
	uint32_t got = ok ? r->transferred : 0;
	if (s->ism != a->ism || s->state != DS_CONNECTED) {
		free(a);
		return;
	}
	if (a->step == ALUA_STEP_VPD83) {
		if (ok)
			alua_port_from_vpd83(a->buf, got, &a->tpg, &a->rel_port);
		a->step = ALUA_STEP_RTPG;
		alua_send(a);
		return;
	}
	struct alua_group g[ALUA_MAX_GROUPS];
	int n = ok ? alua_parse_rtpg(a->buf, got, g, ALUA_MAX_GROUPS) : -1;
	if (!ok)
		log_info("session %s: REPORT TARGET PORT GROUPS not answered (%s); ALUA states unknown", s->idstr,
			 r && r->status == SCSI_CHECK_CONDITION ? "CHECK CONDITION" : "no answer");
	portals_alua(s, false, a->tpg, a->rel_port, g, n);
	free(a);
}

static void alua_send(struct alua_probe *a)
{
	struct dsession *s = a->s;
	struct dio *io = &a->io;
	memset(io, 0, sizeof(*io));
	io->priv = a;
	io->done = alua_cb;
	io->dir = ISM_DIR_READ;
	io->buf = a->buf;
	io->lun = a->lun;
	if (a->step == ALUA_STEP_VPD83) {
		io->cdb_len = ism_cdb_inquiry(io->cdb, 0x83, DMN_VPD_LEN);
		io->len = DMN_VPD_LEN;
	} else {
		io->cdb_len = alua_cdb_rtpg(io->cdb, RTPG_ALLOC);
		io->len = RTPG_ALLOC;
	}
	io->s = s;
	io->seq = ++s->next_seq;
	io->resend = DIO_ONCE;
	if (!s->ism || dio_send_now(s, io) < 0) {
		free(a);
		return;
	}
	lib_settle_soon(s);
}

void probe_alua(struct dsession *s)
{
	if (s->nportals < 2 || !s->ism || s->state != DS_CONNECTED)
		return;
	const struct dlun *l = NULL;
	for (size_t i = 0; i < s->nluns && !l; i++)
		if (s->luns[i].have_inquiry && s->luns[i].device_type != SCSI_PDT_UNKNOWN)
			l = &s->luns[i];
	if (!l)
		return;
	if (alua_tpgs(l->inquiry, l->inquiry_len) <= 0) {
		portals_alua(s, true, -1, -1, NULL, -1);
		return;
	}
	struct alua_probe *a = xcalloc(1, sizeof(*a));
	a->s = s;
	a->ism = s->ism;
	a->lun = l->lun;
	a->tpg = a->rel_port = -1;
	a->step = ALUA_STEP_VPD83;
	alua_send(a);
}
