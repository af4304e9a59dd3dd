/* Connections added to a session by the user, and restored after a reconnect. */
#ifndef ISTHMUS_DAEMON_CONNECTIONS_H
#define ISTHMUS_DAEMON_CONNECTIONS_H

#include <stddef.h>
#include <stdint.h>

struct dsession;

int dsess_add_connection(struct dsession *s, const char *portal, uint64_t op, char *err, size_t errlen);
int dsess_remove_connection(struct dsession *s, uint16_t cid, uint64_t op, char *err, size_t errlen);
/* After a reconnect: the connections added before are added again. */
void dsess_readd_connections(struct dsession *s);

#endif
