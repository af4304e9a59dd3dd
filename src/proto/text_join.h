/*
 * Text split over several PDUs by the C (continue) bit, RFC 7143 11.10.2 and 11.12.2: the parts
 * are joined in order until one arrives without the bit, within a bound on the joined length and
 * (when asked) on the number of parts. Login and Text, on both sides of the connection.
 */
#ifndef ISTHMUS_PROTO_TEXT_JOIN_H
#define ISTHMUS_PROTO_TEXT_JOIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/sbuf.h"

enum text_join_result {
	TEXT_JOIN_MORE,       /* stored; the sender continues (C bit set) */
	TEXT_JOIN_COMPLETE,   /* stored; text holds the whole text, kept until the caller resets it */
	TEXT_JOIN_TOO_LONG,   /* text would exceed max_len: nothing stored */
	TEXT_JOIN_TOO_MANY,   /* *parts would exceed max_parts: nothing stored */
};

/*
 * Add one PDU's text to the parts joined so far in text. parts (NULL: not counted) counts the
 * PDUs, bounded by max_parts; max_len bounds the joined length.
 */
enum text_join_result text_join_add(struct sbuf *text, uint32_t *parts, const void *data, uint32_t len, bool more,
				    size_t max_len, uint32_t max_parts);

#endif
