/* The CLI's output conventions: --json prints one compact JSON object, errors go to stderr. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/exit_status.h"

static const char *command_name = "isthmus";
static bool json_mode;

void cli_set_command(const char *name, bool json)
{
	command_name = name;
	json_mode = json;
}

json_t *jstr(const char *v)
{
	if (!v)
		return json_null();
	json_t *r = json_string(v);
	if (r)
		return r;
	char *copy = strdup(v);
	if (!copy)
		return json_null();
	for (char *p = copy; *p; p++)
		if ((unsigned char)*p >= 0x80)
			*p = '?';
	r = json_string(copy);
	free(copy);
	return r ? r : json_null();
}

json_t *jnum(uint64_t v) { return json_integer((json_int_t)v); }

void jprint(json_t *o)
{
	json_dumpf(o, stdout, JSON_COMPACT | JSON_ENSURE_ASCII);
	fputc('\n', stdout);
	json_decref(o);
}

void jprint_indented(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	printf("%s\n", s ? s : "null");
	free(s);
}

const char *jget_str(json_t *o, const char *k, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : dflt;
}

int cli_fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "isthmus: %s: %s\n", command_name, msg);
	if (json_mode) {
		json_t *j = json_object();
		json_object_set_new(j, "command", jstr(command_name));
		json_object_set_new(j, "error", jstr(msg));
		jprint(j);
	}
	return CLI_EXIT_FAILED;
}
