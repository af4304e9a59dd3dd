/* The exit statuses every isthmus command shares. */
#ifndef ISTHMUS_CLI_EXIT_STATUS_H
#define ISTHMUS_CLI_EXIT_STATUS_H

enum cli_exit_status {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAILED = 1,
	CLI_EXIT_USAGE = 2,     /* bad command line; nothing was attempted */
	CLI_EXIT_NOT_FOUND = 3, /* isthmus target: the object named does not exist */
};

#endif
