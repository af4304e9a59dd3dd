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

#endif
