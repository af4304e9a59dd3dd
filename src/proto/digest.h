/* CRC32C header and data digests (RFC 7143 section 13.1) through ISA-L's vectorised code. */
#ifndef ISTHMUS_PROTO_DIGEST_H
#define ISTHMUS_PROTO_DIGEST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* CRC32C of a buffer, as it goes on the wire (little-endian byte order when stored). */
uint32_t crc32c(const void *buf, size_t len);
/* CRC32C over several buffers as if concatenated. */
uint32_t crc32c_iov(const struct iovec *iov, int iovcnt);
/* Incremental form: start with crc32c_init(), feed, then crc32c_final(). */
uint32_t crc32c_init(void);
uint32_t crc32c_update(uint32_t state, const void *buf, size_t len);
uint32_t crc32c_final(uint32_t state);

/* A digest as it travels: least significant byte first (RFC 7143 appendix B.4 examples). */
static inline uint32_t digest_load(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void digest_store(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

#endif
