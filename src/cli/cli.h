/* Shared pieces of the isthmus command line tool: options, output, and logging in to a LUN. */
#ifndef ISTHMUS_CLI_CLI_H
#define ISTHMUS_CLI_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "isthmus/isthmus.h"

/* What the global options set; each command reads the fields it needs. */
struct cli_opts {
	bool json;
	bool quiet;               /* read/write: no progress, no summary line */
	const char *chap_user, *chap_secret, *mutual_user, *mutual_secret;
	const char *header_digest, *data_digest;
	const char *chap_alg;
	const char *initiator_name_opt;
	const char *alias;
	char initiator_name[256];
	int page;                 /* -1: standard INQUIRY */
	bool has_lba, has_blocks;
	uint64_t lba, blocks;
	const char *out, *in;
	int connections, io;      /* the session test's options */
	bool reinstate;
	int timeout_s;
	int depth;
	uint32_t io_kib;          /* 0: the command's own default */
	char chap_alg_buf[64];
};

/* getopt_long codes of the options every initiator command takes (and the session test too). */
enum cli_option {
	CLI_O_CHAP_USER = 1000,
	CLI_O_CHAP_SECRET,
	CLI_O_MUTUAL_USER,
	CLI_O_MUTUAL_SECRET,
	CLI_O_HDIGEST,
	CLI_O_DDIGEST,
	CLI_O_INAME,
	CLI_O_ALIAS,
	CLI_O_JSON,
	CLI_O_TIMEOUT,
	CLI_O_IOSIZE,
	CLI_O_CHAP_ALG,
	CLI_O_FIRST_COMMAND_OPTION, /* codes of a program's own options start here */
};

#define CLI_LOGIN_LONGOPTS                                                                          \
	{"chap-user", required_argument, NULL, CLI_O_CHAP_USER},                                    \
	{"chap-secret", required_argument, NULL, CLI_O_CHAP_SECRET},                                \
	{"mutual-user", required_argument, NULL, CLI_O_MUTUAL_USER},                                \
	{"mutual-secret", required_argument, NULL, CLI_O_MUTUAL_SECRET},                            \
	{"header-digest", required_argument, NULL, CLI_O_HDIGEST},                                  \
	{"data-digest", required_argument, NULL, CLI_O_DDIGEST},                                    \
	{"initiator-name", required_argument, NULL, CLI_O_INAME},                                   \
	{"initiator-alias", required_argument, NULL, CLI_O_ALIAS},                                  \
	{"json", no_argument, NULL, CLI_O_JSON},                                                    \
	{"timeout", required_argument, NULL, CLI_O_TIMEOUT},                                        \
	{"io-size", required_argument, NULL, CLI_O_IOSIZE},                                         \
	{"chap-alg", required_argument, NULL, CLI_O_CHAP_ALG}

/* Applies one of the CLI_LOGIN_LONGOPTS; 0, or -1 after a message on stderr (exit status 2). */
int cli_login_option(struct cli_opts *o, int opt, const char *arg);
/* A number for option opt; 0, or -1 after a message on stderr. */
int cli_parse_u64(const char *opt, const char *v, uint64_t *out);
/* Turns ISTHMUS_DEBUG=1 in the environment into the library's debug log. */
void cli_debug_from_env(void);

/*
 * The initiator name to use: explicit (if not NULL), else `initiator-name` from $ISTHMUS_CONFIG
 * or /etc/isthmus/initiator.conf, else the one kept in $ISTHMUS_STATE_DIR (or /var/lib/isthmus)
 * file `initiatorname`, generated and saved there the first time. 0 or -1 with err.
 */
int cli_initiator_name(const char *explicit_name, char *out, size_t outlen, char *err, size_t errlen);

/* Output: the command name errors carry, and whether they go out as JSON too. */
void cli_set_command(const char *name, bool json);
/* One line to stderr (and {"command": ..., "error": ...} with --json); returns exit status 1. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A JSON string from C text (NULL: null); bytes that are not UTF-8 become '?'. */
json_t *jstr(const char *v);
json_t *jnum(uint64_t v);
/* Prints the object as one compact line on standard output and releases it. */
void jprint(json_t *o);
/* Prints a management answer for --json: indented, members in their order; j stays the caller's. */
void jprint_indented(json_t *j);
/* Member k of object o if it is a string, else dflt. */
const char *jget_str(json_t *o, const char *k, const char *dflt);

/* Library configuration from the options, with the URL's credentials first. 0 or cli_fail's 1. */
int cli_make_config(struct cli_opts *o, struct ism_config *cfg, const struct ism_url *u);
/* The URL, or NULL after the error is printed; need_target: it must name a target. */
struct ism_url *cli_parse_url(const char *s, bool need_target);
/* Takes the UNIT ATTENTIONs a fresh login meets, so the next command sees the device's answer. */
void cli_settle(struct ism_session *s, uint64_t lun);
/* Logs in to the URL's target; NULL after printing the error. */
struct ism_session *cli_open_session(struct cli_opts *o, const struct ism_url *u);
/* Parse URL (a target is required) and open a session to it; on failure the URL is freed, the
 * error printed and NULL returned, else *up holds the URL for the caller to free. */
struct ism_session *cli_open_url(struct cli_opts *o, const char *url, struct ism_url **up);
/* Logs out (when still logged in) and frees the session. */
void cli_close_session(struct ism_session *s);
/* READ CAPACITY(16), falling back to (10): last LBA and block size. 0 or -1. */
int cli_get_capacity(struct ism_session *s, uint64_t lun, uint64_t *last, uint32_t *bs);

/* The one-shot commands; each returns the process exit status. */
int cmd_discover(struct cli_opts *o, const char *portal);
int cmd_inquiry(struct cli_opts *o, const char *url);
int cmd_readcapacity(struct cli_opts *o, const char *url);
int cmd_reportluns(struct cli_opts *o, const char *url);
int cmd_read(struct cli_opts *o, const char *url);
int cmd_write(struct cli_opts *o, const char *url);

#endif
