#include "util/parse.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int parse_size(const char *s, uint64_t *out)
{
	const char *p = s;
	uint64_t v = 0;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	/* Sizes are binary whatever the spelling: people write 1G, 1GB, 1Gi and 1GiB for the same disk. */
	static const struct {
		char letter;
		unsigned shift;
	} units[] = {{'k', 10}, {'m', 20}, {'g', 30}, {'t', 40}, {'p', 50}};
	unsigned shift = 0;
	if (*p == 0 || strcasecmp(p, "b") == 0) {
		*out = v;
		return 0;
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (tolower((unsigned char)*p) == units[i].letter)
			shift = units[i].shift;
	if (!shift)
		return -1;
	p++;
	if (*p == 'i' || *p == 'I')
		p++;
	if (*p == 'b' || *p == 'B')
		p++;
	if (*p || v > UINT64_MAX >> shift)
		return -1;
	*out = v << shift;
	return 0;
}

int parse_uint(const char *s, int base, uint64_t min, uint64_t max, uint64_t *out)
{
	/* strtoull would take leading blanks and a sign (and wrap "-1" to the largest value). */
	if (!s || !isalnum((unsigned char)*s))
		return -1;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, base);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int parse_duration_ms(const char *s, uint64_t *out_ms)
{
	if (!s || !*s)
		return -1;
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -1;
	double ms_per_unit;
	if (*end == 0 || strcmp(end, "s") == 0)
		ms_per_unit = 1000;
	else if (strcmp(end, "ms") == 0)
		ms_per_unit = 1;
	else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
		ms_per_unit = 60000;
	else
		return -1;
	v *= ms_per_unit;
	if (v > (double)PARSE_DURATION_MAX_MS)
		return -1;
	*out_ms = (uint64_t)(v + 0.5);
	return 0;
}

char *trim(char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		s[--n] = 0;
	return s;
}
