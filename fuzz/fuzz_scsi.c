/*
 * libFuzzer: SCSI commands as an initiator may send them, run against a two-LU target (memory
 * stores) by the SCSI layer. Input: a sequence of records [flags, cdb length, cdb, out length,
 * out data]; every CDB field and parameter list comes from the input. The layer must answer
 * every command with a status and never read or write outside its buffers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scsi/scsi.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int completions;

static void done(struct scsi_cmd *cmd)
{
	(void)cmd;
	completions++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct scsi_target *t = scsi_target_new("iqn.2026-11.org.isthmus:fuzz");
	struct scsi_port_ctx *ctx = scsi_port_ctx_new(t, NULL);
	char *err = NULL;
	for (uint16_t lun = 0; lun < 2; lun++) {
		struct store *st = store_mem_open(1u << 17, &err);
		struct scsi_lu_params p = {.block_size = lun ? 4096 : 512, .thin = true, .write_cache = true};
		if (!st || scsi_target_add_lu(t, lun, st, &p, &err) < 0) {
			free(err);
			store_close(st);
			scsi_target_free(t);
			return 0;
		}
	}
	struct scsi_nexus nx[2] = {0};
	for (int i = 0; i < 2; i++) {
		nx[i].id = (uint64_t)i + 1;
		strcpy(nx[i].initiator_name, i ? "iqn.2026-11.org.isthmus:b" : "iqn.2026-11.org.isthmus:a");
		strcpy(nx[i].initiator_port, i ? "iqn.2026-11.org.isthmus:b,i,0x400000000002"
					       : "iqn.2026-11.org.isthmus:a,i,0x400000000001");
		nx[i].isid[5] = (uint8_t)(i + 1);
		nx[i].rel_port_id = 1;
		scsi_target_nexus_added(t, &nx[i]);
	}
	static uint8_t in[1 << 16];
	size_t pos = 0;
	for (int n = 0; n < 64 && pos + 2 <= size; n++) {
		uint8_t flags = data[pos++];
		uint8_t cdb_len = data[pos++] % 33;
		if (cdb_len < 6)
			cdb_len = 6;
		if (pos + cdb_len > size)
			break;
		struct scsi_cmd cmd;
		memset(&cmd, 0, sizeof(cmd));
		memcpy(cmd.cdb, data + pos, cdb_len);
		cmd.cdb_len = cdb_len < 16 ? 16 : cdb_len;
		pos += cdb_len;
		uint32_t out_len = 0;
		if (pos + 2 <= size) {
			out_len = (uint32_t)(data[pos] << 8 | data[pos + 1]);
			pos += 2;
		}
		if (out_len > size - pos)
			out_len = (uint32_t)(size - pos);
		cmd.out = data + pos;
		cmd.out_len = out_len;
		pos += out_len;
		cmd.nexus = &nx[flags & 1];
		cmd.lun = (flags >> 1) & 3; /* LUs 0 and 1 exist; 2 and 3 do not */
		cmd.lun_valid = !(flags & 0x80);
		cmd.in = in;
		cmd.in_cap = (flags & 0x40) ? (uint32_t)sizeof(in) : (uint32_t)(flags & 0x38) * 64;
		cmd.task_attr = TASK_SIMPLE;
		cmd.done = done;
		int before = completions;
		scsi_port_submit(ctx, &cmd);
		if (completions != before + 1)
			__builtin_trap(); /* every command completes exactly once */
		if (cmd.in_len > cmd.in_cap || cmd.sense_len > sizeof(cmd.sense))
			__builtin_trap();
		if ((flags & 0x30) == 0x30)
			scsi_target_task_mgmt(t, (flags & 8) ? SCSI_TMF_LUN_RESET : SCSI_TMF_TARGET_WARM_RESET,
					      cmd.lun, true, cmd.nexus);
	}
	for (int i = 0; i < 2; i++)
		scsi_target_nexus_lost(t, &nx[i]);
	scsi_target_free(t);
	return 0;
}
