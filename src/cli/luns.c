/* isthmus readcapacity URL and reportluns URL: what a LUN holds and which LUNs a target has. */
#include <inttypes.h>

#include "cli/cli.h"

int cmd_readcapacity(struct cli_opts *o, const char *url)
{
	struct ism_url *u;
	struct ism_session *s = cli_open_url(o, url, &u);
	if (!s)
		return 1;
	uint64_t last;
	uint32_t bs;
	int rc = 0;
	if (cli_get_capacity(s, u->lun, &last, &bs) < 0) {
		rc = cli_fail("%s", ism_session_error(s));
	} else if (o->json) {
		json_t *j = json_object();
		json_object_set_new(j, "lun", jnum(u->lun));
		json_object_set_new(j, "last_lba", jnum(last));
		json_object_set_new(j, "blocks", jnum(last + 1));
		json_object_set_new(j, "block_size", jnum(bs));
		json_object_set_new(j, "bytes", jnum((last + 1) * bs));
		jprint(j);
	} else {
		printf("Last LBA: %" PRIu64 "\nBlocks: %" PRIu64 "\nBlock size: %u\nBytes: %" PRIu64 "\n", last,
		       last + 1, bs, (last + 1) * bs);
	}
	cli_close_session(s);
	ism_url_free(u);
	return rc;
}

int cmd_reportluns(struct cli_opts *o, const char *url)
{
	struct ism_url *u;
	struct ism_session *s = cli_open_url(o, url, &u);
	if (!s)
		return 1;
	uint64_t luns[1024];
	size_t n = 1024;
	int rc = 0;
	if (ism_report_luns(s, luns, &n) < 0) {
		rc = cli_fail("%s", ism_session_error(s));
	} else {
		if (n > 1024)
			n = 1024;
		if (o->json) {
			json_t *j = json_object(), *list = json_array();
			json_object_set_new(j, "target", jstr(u->target));
			for (size_t i = 0; i < n; i++)
				json_array_append_new(list, jnum(luns[i]));
			json_object_set_new(j, "luns", list);
			jprint(j);
		} else {
			for (size_t i = 0; i < n; i++)
				printf("LUN %" PRIu64 "\n", luns[i]);
		}
	}
	cli_close_session(s);
	ism_url_free(u);
	return rc;
}
