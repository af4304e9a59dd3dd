/* The login options of the session's persistent reservation (pr_key, pr_type): parsed, kept through
 * the stored form of a persistent login, and refused when they make no reservation. */
#include <string.h>

#include "../test.h"
#include "daemon/config.h"

static const char *const names[] = { "we", "ea", "we-ro", "ea-ro", "we-ar", "ea-ar" };
static const uint8_t codes[] = { 1, 3, 5, 6, 7, 8 };

static void test_types(void)
{
	for (size_t i = 0; i < sizeof(codes); i++) {
		CHECK_EQ(ds_pr_type_parse(names[i]), codes[i]);
		CHECK_STR(ds_pr_type_name(codes[i]), names[i]);
	}
	CHECK_EQ(ds_pr_type_parse("WE"), 0);
	CHECK_EQ(ds_pr_type_parse(""), 0);
	CHECK_EQ(ds_pr_type_parse(NULL), 0);
	CHECK(ds_pr_type_name(0) == NULL && ds_pr_type_name(2) == NULL && ds_pr_type_name(9) == NULL);
	printf("ok: the six reservation types by name and SPC-4 code\n");
}

static void test_opts(void)
{
	char err[256];
	struct dsess_opts o, back;
	json_t *j = json_pack("{s:s,s:s,s:s,s:s}", "target", "iqn.2026-11.org.isthmus:t", "portal", "127.0.0.1:3260",
			      "pr_key", "abc", "pr_type", "we-ro");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), 0);
	CHECK(o.pr_key_set && o.pr_key == 0xabc && o.pr_type == 5);
	json_t *stored = dsess_opts_to_json(&o, true);
	CHECK_STR(json_string_value(json_object_get(stored, "pr_type")), "we-ro");
	CHECK_EQ(dsess_opts_from_json(&back, stored, err, sizeof(err)), 0);
	CHECK(back.pr_key == 0xabc && back.pr_type == 5);
	dsess_opts_free(&back);
	dsess_opts_free(&o);
	json_decref(stored);
	json_decref(j);

	/* Without a type: none stored, none taken. */
	j = json_pack("{s:s,s:s,s:s}", "target", "iqn.2026-11.org.isthmus:t", "portal", "h", "pr_key", "1");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), 0);
	CHECK_EQ(o.pr_type, 0);
	stored = dsess_opts_to_json(&o, true);
	CHECK(json_object_get(stored, "pr_type") == NULL);
	dsess_opts_free(&o);
	json_decref(stored);
	json_decref(j);

	/* An unknown type, or a type without the key it is taken with: refused. */
	j = json_pack("{s:s,s:s,s:s,s:s}", "target", "iqn.2026-11.org.isthmus:t", "portal", "h", "pr_key", "1",
		      "pr_type", "exclusive");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
	CHECK(strstr(err, "pr_type") != NULL);
	json_decref(j);
	j = json_pack("{s:s,s:s,s:s}", "target", "iqn.2026-11.org.isthmus:t", "portal", "h", "pr_type", "we");
	CHECK_EQ(dsess_opts_from_json(&o, j, err, sizeof(err)), -1);
	CHECK(strstr(err, "pr_key") != NULL);
	json_decref(j);
	printf("ok: pr_type parsed, stored with a persistent login, refused unknown or without pr_key\n");
}

int main(void)
{
	test_types();
	test_opts();
	TEST_MAIN_END();
}
