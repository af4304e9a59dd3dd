/* isthmus target ...: the target management commands of the CLI. */
#ifndef ISTHMUS_CLI_TARGET_CMD_H
#define ISTHMUS_CLI_TARGET_CMD_H

/* argv[0] is "target"; returns the process exit status. */
int cmd_target(int argc, char **argv);

#endif
