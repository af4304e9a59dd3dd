/*
 * iSCSI PDUs (RFC 7143 section 11): the 48-byte Basic Header Segment of every opcode decoded
 * into a struct and encoded back, plus AHS parsing. Pure functions over bytes, shared by the
 * target and the initiator and fuzzed without sockets.
 */
#ifndef ISTHMUS_PROTO_PDU_H
#define ISTHMUS_PROTO_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BHS_LEN 48
#define RESERVED_TAG 0xffffffffu

enum iscsi_opcode {
	/* initiator to target */
	OP_NOP_OUT = 0x00,
	OP_SCSI_CMD = 0x01,
	OP_TASK_MGMT_REQ = 0x02,
	OP_LOGIN_REQ = 0x03,
	OP_TEXT_REQ = 0x04,
	OP_DATA_OUT = 0x05,
	OP_LOGOUT_REQ = 0x06,
	OP_SNACK = 0x10,
	/* target to initiator */
	OP_NOP_IN = 0x20,
	OP_SCSI_RESP = 0x21,
	OP_TASK_MGMT_RESP = 0x22,
	OP_LOGIN_RESP = 0x23,
	OP_TEXT_RESP = 0x24,
	OP_DATA_IN = 0x25,
	OP_LOGOUT_RESP = 0x26,
	OP_R2T = 0x31,
	OP_ASYNC_MSG = 0x32,
	OP_REJECT = 0x3f,
};

enum reject_reason {
	REJECT_DATA_DIGEST = 0x02,
	REJECT_SNACK = 0x03,
	REJECT_PROTOCOL_ERROR = 0x04,
	REJECT_CMD_NOT_SUPPORTED = 0x05,
	REJECT_IMMEDIATE_CMD = 0x06,
	REJECT_TASK_IN_PROGRESS = 0x07,
	REJECT_INVALID_DATA_ACK = 0x08,
	REJECT_INVALID_PDU_FIELD = 0x09,
	REJECT_OUT_OF_RESOURCES = 0x0a,
	REJECT_WAITING_FOR_LOGOUT = 0x0c,
};

enum tmf_function {
	TMF_ABORT_TASK = 1,
	TMF_ABORT_TASK_SET = 2,
	TMF_CLEAR_ACA = 3,
	TMF_CLEAR_TASK_SET = 4,
	TMF_LOGICAL_UNIT_RESET = 5,
	TMF_TARGET_WARM_RESET = 6,
	TMF_TARGET_COLD_RESET = 7,
	TMF_TASK_REASSIGN = 8,
};

enum tmf_response {
	TMF_RSP_COMPLETE = 0,
	TMF_RSP_NO_TASK = 1,
	TMF_RSP_NO_LUN = 2,
	TMF_RSP_TASK_ALLEGIANT = 3,
	TMF_RSP_REASSIGN_UNSUPPORTED = 4,
	TMF_RSP_NOT_SUPPORTED = 5,
	TMF_RSP_AUTH_FAILED = 6,
	TMF_RSP_REJECTED = 255,
};

enum logout_reason { LOGOUT_CLOSE_SESSION = 0, LOGOUT_CLOSE_CONNECTION = 1, LOGOUT_REMOVE_FOR_RECOVERY = 2 };

enum async_event {
	ASYNC_SCSI_EVENT = 0,
	ASYNC_LOGOUT_REQUEST = 1,
	ASYNC_DROP_CONNECTION = 2,
	ASYNC_DROP_ALL_CONNECTIONS = 3,
	ASYNC_NEGOTIATION_REQUEST = 4,
};

/* Login stages (CSG / NSG). */
enum login_stage { STAGE_SECURITY = 0, STAGE_OPERATIONAL = 1, STAGE_FULL_FEATURE = 3 };

/* Login status class << 8 | detail (RFC 7143 11.13.5). */
enum login_status {
	LOGIN_OK = 0x0000,
	LOGIN_REDIRECT_TEMP = 0x0101,
	LOGIN_REDIRECT_PERM = 0x0102,
	LOGIN_INITIATOR_ERROR = 0x0200,
	LOGIN_AUTH_FAILED = 0x0201,
	LOGIN_AUTHZ_FAILED = 0x0202,
	LOGIN_NOT_FOUND = 0x0203,
	LOGIN_TARGET_REMOVED = 0x0204,
	LOGIN_UNSUPPORTED_VERSION = 0x0205,
	LOGIN_TOO_MANY_CONNECTIONS = 0x0206,
	LOGIN_MISSING_PARAMETER = 0x0207,
	LOGIN_CANT_INCLUDE_IN_SESSION = 0x0208,
	LOGIN_SESSION_TYPE_UNSUPPORTED = 0x0209,
	LOGIN_SESSION_DOES_NOT_EXIST = 0x020a,
	LOGIN_INVALID_DURING_LOGIN = 0x020b,
	LOGIN_TARGET_ERROR = 0x0300,
	LOGIN_SERVICE_UNAVAILABLE = 0x0301,
	LOGIN_OUT_OF_RESOURCES = 0x0302,
};

const char *login_status_str(uint16_t status);
const char *opcode_str(uint8_t opcode);

/* A decoded Basic Header Segment. Fields an opcode does not define stay zero. */
struct bhs {
	uint8_t opcode;
	bool immediate;
	bool final;           /* F bit (T bit for login) */
	uint8_t total_ahs_len; /* in bytes (the wire field is in 4-byte words) */
	uint32_t data_len;     /* DataSegmentLength */
	uint8_t lun[8];
	uint32_t itt;
	union {
		struct {
			bool read, write;
			uint8_t attr;
			uint32_t edtl, cmdsn, expstatsn;
			uint8_t cdb[16];
		} cmd;
		struct {
			uint8_t flags; /* o u O U bits as on the wire */
			uint8_t response, status;
			uint32_t snack_tag, statsn, expcmdsn, maxcmdsn, expdatasn;
			uint32_t bidi_residual, residual;
		} rsp;
		struct {
			uint32_t ttt, cmdsn, expstatsn; /* NOP-Out */
		} nop_out;
		struct {
			uint32_t ttt, statsn, expcmdsn, maxcmdsn; /* NOP-In */
		} nop_in;
		struct {
			uint8_t function;
			uint32_t rtt, cmdsn, expstatsn, refcmdsn, expdatasn;
		} tmf;
		struct {
			uint8_t response;
			uint32_t statsn, expcmdsn, maxcmdsn;
		} tmf_rsp;
		struct {
			bool cont;
			uint8_t csg, nsg, version_max, version_min; /* version_min = Version-active in responses */
			uint8_t isid[6];
			uint16_t tsih, cid;
			uint32_t cmdsn, expstatsn;  /* request */
			uint32_t statsn, expcmdsn, maxcmdsn; /* response */
			uint8_t status_class, status_detail;
		} login;
		struct {
			bool cont;
			uint32_t ttt, cmdsn, expstatsn;     /* request */
			uint32_t statsn, expcmdsn, maxcmdsn; /* response */
		} text;
		struct {
			uint32_t ttt, expstatsn, datasn, offset;
		} data_out;
		struct {
			bool ack, overflow, underflow, status_present;
			uint8_t status;
			uint32_t ttt, statsn, expcmdsn, maxcmdsn, datasn, offset, residual;
		} data_in;
		struct {
			uint32_t ttt, statsn, expcmdsn, maxcmdsn, r2tsn, offset, desired_len;
		} r2t;
		struct {
			uint8_t reason;
			uint16_t cid;
			uint32_t cmdsn, expstatsn;
		} logout;
		struct {
			uint8_t response;
			uint32_t statsn, expcmdsn, maxcmdsn;
			uint16_t time2wait, time2retain;
		} logout_rsp;
		struct {
			uint8_t type;
			uint32_t ttt, expstatsn, begrun, runlength;
		} snack;
		struct {
			uint8_t event, vcode;
			uint32_t statsn, expcmdsn, maxcmdsn;
			uint16_t param1, param2, param3;
		} async;
		struct {
			uint8_t reason;
			uint32_t statsn, expcmdsn, maxcmdsn, datasn;
		} reject;
	};
};

/*
 * Decode a BHS. Returns 0, or a reject reason (enum reject_reason) with a message in why when
 * the header is malformed for its opcode (unknown opcode: REJECT_CMD_NOT_SUPPORTED).
 */
int bhs_decode(const uint8_t raw[BHS_LEN], struct bhs *out, char *why, size_t whylen);
/* Encode a BHS; fields not defined for the opcode are written as zero. */
void bhs_encode(const struct bhs *in, uint8_t raw[BHS_LEN]);

/* Additional header segments of a SCSI Command (RFC 7143 11.2.2). */
struct ahs_info {
	uint8_t ext_cdb[244]; /* bytes 16.. of a long CDB */
	uint16_t ext_cdb_len;
	bool has_bidi_read_len;
	uint32_t bidi_read_len;
};

/* Parse total_len bytes of AHS. Returns 0 or a reject reason with a message in why. */
int ahs_parse(const uint8_t *ahs, size_t total_len, struct ahs_info *out, char *why, size_t whylen);

static inline uint32_t pad4(uint32_t n) { return (n + 3u) & ~3u; }

#endif
