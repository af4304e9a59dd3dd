/*
 * The service manager's readiness protocol: state lines ("READY=1", "RELOADING=1",
 * "STOPPING=1") sent as one datagram to the Unix socket named by $NOTIFY_SOCKET. A name starting
 * with '@' is an abstract socket. Without $NOTIFY_SOCKET (not started by a service manager, or
 * started with Type=simple) every call is a no-op, so the daemons call it unconditionally.
 */
#ifndef ISTHMUS_UTIL_SD_NOTIFY_H
#define ISTHMUS_UTIL_SD_NOTIFY_H

/* Sends state; 1 if sent, 0 without $NOTIFY_SOCKET, -1 with errno when it could not be sent. */
int sd_notify_send(const char *state);

/* The daemon is serving: start-up done, or a reload finished. */
int sd_notify_ready(void);
/* A reload starts; the manager's clock reading is attached, as newer managers require. */
int sd_notify_reloading(void);
/* An orderly stop starts. */
int sd_notify_stopping(void);

#endif
