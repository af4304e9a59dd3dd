/* libFuzzer: login/text negotiation of arbitrary key=value segments, both roles. */
#include <stddef.h>
#include <stdint.h>

#include "proto/params.h"
#include "proto/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct text_list in = {0}, out = {0};
	char err[160];
	if (text_parse(data, size, &in, err, sizeof(err)) == 0) {
		struct iscsi_params want;
		params_defaults(&want);
		want.max_recv_dsl = 262144;
		want.initial_r2t = false;
		struct negotiator n;
		negotiator_init(&n, &want, size & 1, true);
		negotiate_respond(&n, &in, &out, size & 2, err, sizeof(err));
		negotiate_finish(&n, &out);
		if (n.result.first_burst_length > n.result.max_burst_length)
			__builtin_trap();
		struct negotiator i;
		want.header_digest = true;
		negotiator_init(&i, &want, true, false);
		struct text_list prop = {0};
		negotiate_propose(&i, &prop, false);
		negotiate_accept(&i, &in, err, sizeof(err));
		text_clear(&prop);
	}
	text_clear(&in);
	text_clear(&out);
	return 0;
}
