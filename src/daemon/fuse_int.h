/*
 * What the FUSE file system (fuse.c: names, attributes, mounting) and its I/O requests
 * (fuse_io.c) share. Inode numbers: a session's directory is id << 16, its LUN N is
 * (id << 16) | (N + 1).
 */
#ifndef ISTHMUS_DAEMON_FUSE_INT_H
#define ISTHMUS_DAEMON_FUSE_INT_H

#include "daemon/fuse_ops.h"

struct daemon;
struct dsession;
struct dlun;

#define FUSE_MAX_IO (1u << 20)   /* bytes of one read or write request */

static inline struct daemon *dmn(fuse_req_t req) { return fuse_req_userdata(req); }

/* The session whose devices are present and whose directory or LUN ino is; NULL if none. */
struct dsession *fuse_session_of(struct daemon *d, fuse_ino_t ino);
/* The exposed LUN of s that ino names; NULL if none. */
struct dlun *fuse_lun_of(struct dsession *s, fuse_ino_t ino);

void fuse_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void fuse_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi);
void fuse_op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void fuse_op_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
		       struct fuse_file_info *fi);

/* The request free list: kept from fusedev_start, emptied by fuse_io_close. */
void fuse_io_open(void);
/* At stop: requests still waiting for an earlier write are answered with an error. */
void fuse_io_stop_waiting(void);
void fuse_io_close(void);

#endif
