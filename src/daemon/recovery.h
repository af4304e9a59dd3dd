/* Login, and recovery after a lost connection: a login attempt every reconnect interval, devices
 * removed after the removal latency. */
#ifndef ISTHMUS_DAEMON_RECOVERY_H
#define ISTHMUS_DAEMON_RECOVERY_H

struct dsession;

/* One login attempt (a new libisthmus session with the session's ISID). */
void recovery_login(struct dsession *s);
/* The libisthmus session failed: reconnect, and start the removal latency. */
void recovery_lost(struct dsession *s);
/* ErrorRecoveryLevel 2: note a connection the library lost and is replacing (session show). */
void recovery_note_kept_loss(struct dsession *s);
/* Leave the current libisthmus session on purpose (nothing in flight) and log in again at once
 * through the session's login portal; the queue waits for it. */
void recovery_move(struct dsession *s, const char *why);

#endif
