#include "util/iscsi_name.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static bool name_fail(char *why, size_t whylen, const char *msg)
{
	if (why && whylen)
		snprintf(why, whylen, "%s", msg);
	return false;
}

static bool all_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return s[n] == 0;
}

bool iscsi_name_valid(const char *name, char *why, size_t whylen)
{
	size_t len = strlen(name);
	if (len == 0)
		return name_fail(why, whylen, "empty iSCSI name");
	if (len > 223)
		return name_fail(why, whylen, "iSCSI name longer than 223 bytes");
	if (strncmp(name, "eui.", 4) == 0) {
		if (len != 20 || !all_hex(name + 4, 16))
			return name_fail(why, whylen, "eui. name needs exactly 16 hex digits");
		return true;
	}
	if (strncmp(name, "naa.", 4) == 0) {
		if (!((len == 20 && all_hex(name + 4, 16)) || (len == 36 && all_hex(name + 4, 32))))
			return name_fail(why, whylen, "naa. name needs 16 or 32 hex digits");
		return true;
	}
	if (strncmp(name, "iqn.", 4) != 0)
		return name_fail(why, whylen, "iSCSI name must start with iqn., eui. or naa.");
	/* iqn.YYYY-MM.naming-authority[:unique] */
	const char *p = name + 4;
	if (!(isdigit((unsigned char)p[0]) && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[2]) &&
	      isdigit((unsigned char)p[3]) && p[4] == '-' && isdigit((unsigned char)p[5]) &&
	      isdigit((unsigned char)p[6]) && p[7] == '.' && p[8] != 0))
		return name_fail(why, whylen, "iqn. name needs a date (iqn.YYYY-MM.) and a naming authority");
	int month = (p[5] - '0') * 10 + (p[6] - '0');
	if (month < 1 || month > 12)
		return name_fail(why, whylen, "iqn. name has an invalid month");
	for (const char *c = name; *c; c++) {
		unsigned char ch = (unsigned char)*c;
		if (!(islower(ch) || isdigit(ch) || ch == '-' || ch == '.' || ch == ':'))
			return name_fail(why, whylen,
					 "iSCSI names may only hold lower-case letters, digits, '-', '.' and ':'");
	}
	return true;
}
