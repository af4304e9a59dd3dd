/* Prometheus text exposition of the target's counters over HTTP. */
#ifndef ISTHMUS_TARGET_METRICS_H
#define ISTHMUS_TARGET_METRICS_H

struct server;
struct metrics_server;

/* Listen on HOST:PORT; NULL with *err on failure. */
struct metrics_server *metrics_start(struct server *srv, const char *listen_spec, char **err);
void metrics_stop(struct metrics_server *ms);
/* The exposition text (malloc'd). */
char *metrics_render(struct server *srv);

#endif
