/* Local devices as NBD exports, one Unix socket per exposed LUN (nbd.c). */
#ifndef ISTHMUS_DAEMON_NBD_H
#define ISTHMUS_DAEMON_NBD_H

#include <stddef.h>

struct dsession;
struct dlun;
struct nbd_export;

struct nbd_export *nbd_export_new(struct dsession *s, struct dlun *l, char *err, size_t errlen);
void nbd_export_free(struct nbd_export *e);
const char *nbd_export_path(const struct nbd_export *e);

#endif
