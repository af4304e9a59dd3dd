/* The target's JSON-RPC management methods. */
#ifndef ISTHMUS_TARGET_MGMT_H
#define ISTHMUS_TARGET_MGMT_H

#include <jansson.h>

#define MGMT_DEFAULT_SOCKET "/run/isthmus/target.sock"

struct server;
struct session;

int mgmt_start(struct server *srv, const char *path, char **err);
void mgmt_stop(struct server *srv);
json_t *mgmt_session_json(const struct session *s);

#endif
