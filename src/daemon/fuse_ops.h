/*
 * The daemon's FUSE request handlers (libfuse's low-level API; the session's userdata is the
 * struct daemon). fusedev_start mounts them on the devices directory; fuzz/fuzz_fuse.c runs them
 * on a session without a mount, its requests handed over as bytes.
 */
#ifndef ISTHMUS_DAEMON_FUSE_OPS_H
#define ISTHMUS_DAEMON_FUSE_OPS_H

#define FUSE_USE_VERSION 34
#include <fuse_lowlevel.h>

extern const struct fuse_lowlevel_ops dmn_fuse_ops;

#endif
