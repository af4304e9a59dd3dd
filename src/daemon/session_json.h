/* A session as JSON: every field of `isthmus session show`. */
#ifndef ISTHMUS_DAEMON_SESSION_JSON_H
#define ISTHMUS_DAEMON_SESSION_JSON_H

#include <jansson.h>

struct dsession;

json_t *dsess_json(struct dsession *s);

#endif
