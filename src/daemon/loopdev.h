/*
 * Block devices for exposed LUNs: a loop device on each LUN's FUSE file (loopdev.c).
 *
 * Attaching opens the FUSE file and detaching flushes the device: both call back into this
 * daemon's FUSE handlers, which run on the event loop. So the loop ioctls run on a worker thread
 * (an offload pool of one, one key: one job after another), and their results come back to the
 * loop through its descriptor.
 */
#ifndef ISTHMUS_DAEMON_LOOPDEV_H
#define ISTHMUS_DAEMON_LOOPDEV_H

#include <stddef.h>
#include <stdint.h>

struct daemon;
struct dsession;

/* Before the devices directory is mounted: detach loop devices left on its files by an earlier
 * run, and unmount a FUSE mount it left there. Runs on the loop thread, before any FUSE request
 * can be asked of this run. */
void loopdev_clean_stale(struct daemon *d);
/* Starts the worker (0), or -1 with err when loop devices cannot be used. */
int loopdev_start(struct daemon *d, char *err, size_t errlen);
/* Attach a device to every exposed LUN of s that has none; detach those whose LUN went. */
void loopdev_sync(struct daemon *d, struct dsession *s);
/* The LUN's capacity changed (its FUSE file already has the new size): the device takes it. */
void loopdev_resize(struct daemon *d, struct dsession *s, uint64_t lun);
/* "/dev/loopN" of an attached LUN, or NULL. */
const char *loopdev_name(struct daemon *d, uint64_t sid, uint64_t lun);
/* Detach everything, serving FUSE requests meanwhile (bounded), then stop the worker. */
void loopdev_stop(struct daemon *d);

#endif
