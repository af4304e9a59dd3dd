/* Entry point of the daemon for src/cmd/initiator_main.c. */
#ifndef ISTHMUS_DAEMON_RUN_H
#define ISTHMUS_DAEMON_RUN_H

#include <stdbool.h>

struct dmn_args {
	const char *config, *state_dir, *socket, *devices_dir, *nbd_dir, *ibft;
	const char *isns; /* iSNS server, overrides the file's isns */
	bool no_fuse, no_nbd, no_block;
	int ready_fd; /* written "ok" once the socket listens (-1: none) */
};

/* Runs until SIGTERM/SIGINT; returns the exit status. */
int dmn_run(struct dmn_args *a);

#endif
