/*
 * The libisthmus session of a daemon session in the event loop: the library announces its
 * descriptors (ism_session_set_fd_cb) and they are watched as it asks; readiness and the
 * library's timer run ism_session_service.
 */
#ifndef ISTHMUS_DAEMON_LIBBRIDGE_H
#define ISTHMUS_DAEMON_LIBBRIDGE_H

struct dsession;
struct ism_session;

/* s->ism becomes ism, its descriptors watched from now on. */
void lib_attach(struct dsession *s, struct ism_session *ism);
/* Drop the libisthmus session: its watches go now, the session is freed after this loop
 * iteration (its in-flight I/O then comes back with ISM_ERR_CLOSED and is requeued). */
void lib_detach(struct dsession *s);
/* After a library call from outside ism_session_service: held commands are written, the
 * library's timer follows its next deadline. */
void lib_settle(struct dsession *s);
/* The same, once, after the events of this loop iteration (commands queued meanwhile leave
 * together). */
void lib_settle_soon(struct dsession *s);

#endif
