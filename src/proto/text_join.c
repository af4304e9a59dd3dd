#include "proto/text_join.h"

enum text_join_result text_join_add(struct sbuf *text, uint32_t *parts, const void *data, uint32_t len, bool more,
				    size_t max_len, uint32_t max_parts)
{
	if (text->len + len > max_len)
		return TEXT_JOIN_TOO_LONG;
	if (parts) {
		if (*parts >= max_parts)
			return TEXT_JOIN_TOO_MANY;
		(*parts)++;
	}
	sbuf_append(text, data, len);
	return more ? TEXT_JOIN_MORE : TEXT_JOIN_COMPLETE;
}
