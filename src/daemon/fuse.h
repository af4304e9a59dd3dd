/* Local devices as files on the devices directory (fuse.c; the handlers are in fuse_ops.h). */
#ifndef ISTHMUS_DAEMON_FUSE_H
#define ISTHMUS_DAEMON_FUSE_H

#include <stddef.h>

struct daemon;
struct dsession;

int fusedev_start(struct daemon *d, char *err, size_t errlen);
void fusedev_stop(struct daemon *d);
/* The session's LUN set changed (devices added or removed). */
void fusedev_changed(struct daemon *d, struct dsession *s);

#endif
