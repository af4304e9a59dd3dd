#include "proto/digest.h"

#include <isa-l/crc.h>
#include <limits.h>

/* ISA-L's crc32_iscsi takes the running register and leaves the final inversion to the caller. */
uint32_t crc32c_init(void) { return 0xffffffffu; }

uint32_t crc32c_update(uint32_t state, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	while (len > 0) {
		int chunk = len > (size_t)INT_MAX ? INT_MAX : (int)len;
		state = crc32_iscsi((unsigned char *)p, chunk, state);
		p += chunk;
		len -= (size_t)chunk;
	}
	return state;
}

uint32_t crc32c_final(uint32_t state) { return ~state; }

uint32_t crc32c(const void *buf, size_t len) { return crc32c_final(crc32c_update(crc32c_init(), buf, len)); }

uint32_t crc32c_iov(const struct iovec *iov, int iovcnt)
{
	uint32_t s = crc32c_init();
	for (int i = 0; i < iovcnt; i++)
		s = crc32c_update(s, iov[i].iov_base, iov[i].iov_len);
	return crc32c_final(s);
}
