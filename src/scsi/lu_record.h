/*
 * The text record of a LU's reservation state shared by the gateways of a group (format in
 * lu_state.c): the identities and unit-attention events it names, and its codec.
 */
#ifndef ISTHMUS_SCSI_LU_RECORD_H
#define ISTHMUS_SCSI_LU_RECORD_H

#include "scsi/scsi_int.h"
#include "util/sbuf.h"

struct lu_ident {
	char *port;      /* NULL: nobody */
	uint16_t rel;
	bool atp;        /* every relative target port */
};

struct lu_event {
	uint64_t seq;
	uint32_t ua;
	bool all;
	bool here;               /* raised on this gateway when it happened (a reset) */
	struct lu_ident except;
	struct lu_ident *ids;
	size_t nids;
};

/* A record as parsed, before the LU takes it over (lu_record_free when it does not). */
struct lu_record {
	struct pr_state pr;
	bool rsv_held;
	uint16_t rsv_rel;
	char rsv_port[256];
	uint64_t evseq;
	struct lu_event ev[LU_SHARED_MAX_EVENTS];
	size_t nev;
};

void lu_ident_set(struct lu_ident *id, const char *port, uint16_t rel, bool atp);
void lu_event_free(struct lu_event *e);
void lu_record_encode(const struct scsi_lu *lu, uint64_t evseq, const struct lu_event *ev, size_t nev,
		      struct sbuf *b);
/* Parses text (modified in place) into d; false when it is not a record of ours. */
bool lu_record_decode(char *text, struct lu_record *d);
void lu_record_free(struct lu_record *d);

#endif
