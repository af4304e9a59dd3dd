/*
 * libFuzzer: what a hostile target may send to the initiator library. A session logs in through
 * a socketpair (the harness answers the login correctly), queues a read, a write and a NOP, then
 * receives the fuzz input as the target's byte stream: Data-In, R2T, SCSI Response, NOP-In,
 * Async Message, Reject, text and garbage, cut anywhere. The library must fail cleanly, never crash.
 */
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "initiator/internal.h"
#include "isthmus/isthmus.h"
#include "proto/pdu.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void pump(struct ism_session *s, int rounds)
{
	for (int i = 0; i < rounds; i++) {
		struct pollfd p[ISM_MAX_CONNS];
		int n = ism_session_fds(s, p, ISM_MAX_CONNS);
		int r = n ? poll(p, (nfds_t)n, 0) : 0;
		for (int k = 0; r > 0 && k < n; k++)
			if (p[k].revents)
				ism_session_service(s, p[k].fd, p[k].revents);
		ism_session_service(s, -1, 0);
	}
}

/* Read whatever the initiator sent; answer login requests with a move to full feature phase. */
static void answer_logins(int fd, uint32_t *statsn)
{
	uint8_t buf[65536];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	for (ssize_t pos = 0; n > 0 && pos + BHS_LEN <= n;) {
		struct bhs req;
		char why[96];
		if (bhs_decode(buf + pos, &req, why, sizeof(why)) != 0)
			return;
		if (req.opcode == OP_LOGIN_REQ) {
			static const char keys[] = "HeaderDigest=None\0DataDigest=None\0MaxRecvDataSegmentLength=8192\0"
						   "MaxBurstLength=65536\0FirstBurstLength=8192\0InitialR2T=Yes\0"
						   "ImmediateData=No\0MaxOutstandingR2T=2\0";
			struct bhs r = {0};
			r.opcode = OP_LOGIN_RESP;
			r.final = true;
			r.login.csg = req.login.csg;
			r.login.nsg = STAGE_FULL_FEATURE;
			memcpy(r.login.isid, req.login.isid, 6);
			r.login.tsih = 7;
			r.itt = req.itt;
			r.login.statsn = (*statsn)++;
			r.login.expcmdsn = req.login.cmdsn;
			r.login.maxcmdsn = req.login.cmdsn + 15;
			r.data_len = sizeof(keys) - 1;
			uint8_t out[BHS_LEN + sizeof(keys) + 4] = {0};
			bhs_encode(&r, out);
			memcpy(out + BHS_LEN, keys, sizeof(keys) - 1);
			if (send(fd, out, BHS_LEN + pad4(sizeof(keys) - 1), MSG_NOSIGNAL) < 0)
				return;
		}
		pos += BHS_LEN + req.total_ahs_len + pad4(req.data_len);
	}
}

static void on_scsi(struct ism_session *s, const struct ism_scsi_result *r, void *priv)
{
	(void)s;
	(void)r;
	(void)priv;
}

static void on_done(struct ism_session *s, int status, void *priv)
{
	(void)s;
	(void)status;
	(void)priv;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	struct ism_config cfg;
	ism_config_init(&cfg);
	cfg.initiator_name = "iqn.2026-11.org.isthmus:fuzz";
	cfg.target_name = "iqn.2026-11.org.isthmus:fuzz-target";
	char err[128];
	struct ism_session *s = ism_session_new(&cfg, err, sizeof(err));
	if (!s) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	uint32_t statsn = 1;
	if (ism_attach_fd_async(s, sv[0], true, on_done, NULL) == 0) {
		for (int i = 0; i < 4 && !ism_session_logged_in(s); i++) {
			pump(s, 2);
			answer_logins(sv[1], &statsn);
			pump(s, 2);
		}
		static uint8_t rbuf[16384], wbuf[16384];
		const uint8_t read10[10] = {0x28, 0, 0, 0, 0, 8, 0, 0, 32, 0};
		const uint8_t write10[10] = {0x2a, 0, 0, 0, 0, 16, 0, 0, 32, 0};
		ism_scsi_async(s, 0, read10, sizeof(read10), ISM_DIR_READ, rbuf, sizeof(rbuf), on_scsi, NULL);
		ism_scsi_async(s, 0, write10, sizeof(write10), ISM_DIR_WRITE, wbuf, sizeof(wbuf), on_scsi, NULL);
		ism_nop_async(s, on_done, NULL);
		pump(s, 2);
		char sink[65536];
		while (recv(sv[1], sink, sizeof(sink), MSG_DONTWAIT) > 0) {
		}
		/* The fuzz input is the target's side of the conversation, fed in a few chunks. */
		size_t off = 0;
		while (off < size) {
			size_t chunk = size - off > 4096 ? 4096 : size - off;
			if (send(sv[1], data + off, chunk, MSG_NOSIGNAL) < 0)
				break;
			off += chunk;
			pump(s, 2);
			while (recv(sv[1], sink, sizeof(sink), MSG_DONTWAIT) > 0) {
			}
		}
		shutdown(sv[1], SHUT_WR);
		pump(s, 3);
	}
	ism_session_free(s);
	close(sv[1]);
	return 0;
}
