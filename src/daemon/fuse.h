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
/* DEVICES_DIR/by-id/<name>: a stable name for the LUN (from its VPD identifiers), a symbolic link
 * to its block device (or its file when it has none); NULL when the LUN has no identifier or
 * another exposed LUN has the name first. Allocated. */
struct dlun;
char *fusedev_by_id_path(struct daemon *d, struct dsession *s, struct dlun *l);

#endif
