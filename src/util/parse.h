/*
 * The value syntax every configuration file and command line of the project shares: sizes,
 * durations, and trimming blanks around a key or value. docs/config.md lists the suffixes.
 */
#ifndef ISTHMUS_UTIL_PARSE_H
#define ISTHMUS_UTIL_PARSE_H

#include <stdint.h>

/*
 * A whole number of bytes with an optional binary suffix, case-insensitive: none or b (1),
 * k/ki/kb/kib (2^10), m/mi/mb/mib (2^20), g/gi/gb/gib (2^30), t/ti/tb/tib (2^40),
 * p/pi/pb/pib (2^50). No sign, blanks or fraction. 0, or -1 (also on overflow).
 */
int parse_size(const char *s, uint64_t *out);

/*
 * A whole number from min to max in the given base as strtoull reads it (0: decimal, 0x hex or
 * 0 octal), and nothing else: no sign, blanks or trailing characters. 0, or -1.
 */
int parse_uint(const char *s, int base, uint64_t min, uint64_t max, uint64_t *out);

/* The longest duration parse_duration_ms takes: a year. */
#define PARSE_DURATION_MAX_MS (86400000ull * 365)

/*
 * A duration, seconds unless suffixed: none or s (seconds), ms, m or min (minutes); the number
 * may have a fraction ("2.5", "0.5m"). Rounded to whole milliseconds. 0, or -1 when negative,
 * not finite, longer than PARSE_DURATION_MAX_MS or not of that form.
 */
int parse_duration_ms(const char *s, uint64_t *out_ms);

/* Strips leading and trailing white space in place; returns the first non-blank character. */
char *trim(char *s);

#endif
