/* isthmus login/logout/session/persistent/chap/discover --daemon: the CLI side of isthmus-initiator. */
#ifndef ISTHMUS_CLI_DAEMON_CMD_H
#define ISTHMUS_CLI_DAEMON_CMD_H

/*
 * argv[0] is the command ("login", "logout", "session", "persistent", "chap" or "discover");
 * the daemon is found through --socket PATH, $ISTHMUS_SOCKET or /run/isthmus/initiator.sock.
 * Returns the process exit status (0 success, 1 failure, 2 usage).
 */
int cmd_daemon(int argc, char **argv);

#endif
