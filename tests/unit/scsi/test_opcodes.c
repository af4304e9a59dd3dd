/* The opcode table's flags: which writes may run while the LU's work on workers is pending. */
#include <stdio.h>

#include "../test.h"
#include "scsi/scsi_int.h"

static bool plain_write(uint8_t opcode)
{
	static const uint8_t plain[] = { 0x0a, 0x2a, 0xaa, 0x8a, 0x2e, 0xae, 0x8e };
	for (size_t i = 0; i < sizeof(plain); i++) {
		if (plain[i] == opcode)
			return true;
	}
	return false;
}

static void test_per_block_writes(void)
{
	printf("OPF_PER_BLOCK marks exactly WRITE (6/10/12/16) and WRITE AND VERIFY (10/12/16)\n");
	size_t seen = 0;
	for (size_t i = 0; i < scsi_nopdefs; i++) {
		const struct scsi_opdef *op = &scsi_opdefs[i];
		bool per_block = op->flags & OPF_PER_BLOCK;
		CHECK_EQ(per_block, plain_write(op->opcode));
		if (per_block) {
			CHECK(op->flags & OPF_WRITE);
			CHECK(!(op->flags & OPF_LONG));
			seen++;
		}
	}
	CHECK_EQ(seen, 7);
	printf("every other write (COMPARE AND WRITE, ORWRITE, WRITE ATOMIC, WRITE SAME, ...) is in the table without it\n");
	const uint8_t waiting[] = { 0x89, 0x8b, 0x9c, 0x41, 0x93, 0x42 };
	for (size_t i = 0; i < sizeof(waiting); i++) {
		const struct scsi_opdef *op = op_lookup(waiting[i], 0);
		CHECK(op != NULL);
		if (op) {
			CHECK(op->flags & OPF_WRITE);
			CHECK(!(op->flags & OPF_PER_BLOCK));
		}
	}
}

int main(void)
{
	test_per_block_writes();
	TEST_MAIN_END();
}
