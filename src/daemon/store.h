/* The daemon's state directory: session ids, persistent logins, discovered targets, secrets. */
#ifndef ISTHMUS_DAEMON_STORE_H
#define ISTHMUS_DAEMON_STORE_H

#include <stddef.h>
#include <stdint.h>

struct daemon;

int store_init(struct daemon *d, char *err, size_t errlen);
/* Write data to path atomically (temp + fsync + rename + dir fsync) with mode. 0 or -errno. */
int store_write_atomic(const char *path, const void *data, size_t len, int mode);
/* The next session id (persisted before it is handed out). */
uint64_t store_next_session_id(struct daemon *d);
int store_save_records(struct daemon *d);
int store_save_discovered(struct daemon *d);
int store_set_initiator_secret(struct daemon *d, const char *secret, char *err, size_t errlen);
char *store_read_file(const char *path, size_t max, size_t *len);

#endif
