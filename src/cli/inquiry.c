/* isthmus inquiry URL [--page N]: standard INQUIRY data, or one vital product data page. */
#include <ctype.h>
#include <stdlib.h>

#include "cli/cli.h"
#include "util/bytes.h"

/* The vital product data pages the command decodes (SPC-4 7.8); others print as hex. */
enum vpd_page {
	VPD_SUPPORTED_PAGES = 0x00,
	VPD_UNIT_SERIAL_NUMBER = 0x80,
	VPD_DEVICE_IDENTIFICATION = 0x83,
};

/* Designator code sets (SPC-4 7.8.6.1): ASCII and UTF-8 print as text, binary as hex. */
enum designator_code_set {
	CODE_SET_BINARY = 1,
	CODE_SET_ASCII = 2,
	CODE_SET_UTF8 = 3,
};

static void trimmed(const uint8_t *p, size_t n, char *out)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		out[k++] = isprint(p[i]) ? (char)p[i] : '.';
	while (k && out[k - 1] == ' ')
		k--;
	out[k] = 0;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = 0;
}

static const char *designator_type(uint8_t t)
{
	switch (t & 0x0f) {
	case 0: return "vendor specific";
	case 1: return "T10 vendor id";
	case 2: return "EUI-64";
	case 3: return "NAA";
	case 4: return "relative target port";
	case 5: return "target port group";
	case 6: return "logical unit group";
	case 7: return "MD5 logical unit";
	case 8: return "SCSI name string";
	default: return "reserved";
	}
}

int cmd_inquiry(struct cli_opts *o, const char *url)
{
	struct ism_url *u;
	struct ism_session *s = cli_open_url(o, url, &u);
	if (!s)
		return 1;
	uint8_t buf[4096] = {0};
	uint32_t got = 0;
	int rc = 0;
	if (ism_inquiry(s, u->lun, o->page, buf, o->page < 0 ? 255 : sizeof(buf), &got) < 0) {
		rc = cli_fail("%s", ism_session_error(s));
		goto out;
	}
	if (o->page < 0) {
		if (got < 36) {
			rc = cli_fail("standard INQUIRY returned %u bytes, want at least 36", got);
			goto out;
		}
		char vendor[9], product[17], rev[5];
		trimmed(buf + 8, 8, vendor);
		trimmed(buf + 16, 16, product);
		trimmed(buf + 32, 4, rev);
		uint8_t qual = buf[0] >> 5, type = buf[0] & 0x1f;
		if (o->json) {
			json_t *j = json_object();
			json_object_set_new(j, "lun", jnum(u->lun));
			json_object_set_new(j, "peripheral_qualifier", jnum(qual));
			json_object_set_new(j, "device_type", jnum(type));
			json_object_set_new(j, "device_type_name", jstr(ism_device_type_str(type)));
			json_object_set_new(j, "removable", json_boolean(buf[1] & 0x80));
			json_object_set_new(j, "version", jnum(buf[2]));
			json_object_set_new(j, "vendor", jstr(vendor));
			json_object_set_new(j, "product", jstr(product));
			json_object_set_new(j, "revision", jstr(rev));
			jprint(j);
		} else {
			printf("Peripheral Qualifier: %u%s\n", qual, qual == 0 ? " (connected)" : "");
			printf("Device Type: %s (0x%02x)\n", ism_device_type_str(type), type);
			printf("Removable: %s\n", (buf[1] & 0x80) ? "yes" : "no");
			printf("Version: 0x%02x\n", buf[2]);
			printf("Vendor: %s\n", vendor);
			printf("Product: %s\n", product);
			printf("Revision: %s\n", rev);
		}
		goto out;
	}
	if (got < 4) {
		rc = cli_fail("VPD page 0x%02x returned %u bytes", o->page, got);
		goto out;
	}
	uint32_t plen = get_be16(buf + 2) + 4;
	if (plen > got)
		plen = got;
	char *hx = malloc(2 * plen + 1);
	hex(buf, plen, hx);
	json_t *j = NULL, *list = NULL;
	if (o->json) {
		j = json_object();
		json_object_set_new(j, "lun", jnum(u->lun));
		json_object_set_new(j, "page", jnum(buf[1]));
		json_object_set_new(j, "length", jnum(plen));
		json_object_set_new(j, "hex", jstr(hx));
	} else {
		printf("VPD page 0x%02x (%u bytes)\n", buf[1], plen);
	}
	if (buf[1] == VPD_SUPPORTED_PAGES) {
		if (o->json)
			list = json_array();
		for (uint32_t i = 4; i < plen; i++) {
			if (o->json)
				json_array_append_new(list, jnum(buf[i]));
			else
				printf("  supported page 0x%02x\n", buf[i]);
		}
		if (o->json)
			json_object_set_new(j, "supported_pages", list);
	} else if (buf[1] == VPD_UNIT_SERIAL_NUMBER) {
		char serial[300];
		trimmed(buf + 4, plen - 4 < 255 ? plen - 4 : 255, serial);
		if (o->json)
			json_object_set_new(j, "serial", jstr(serial));
		else
			printf("  unit serial number: %s\n", serial);
	} else if (buf[1] == VPD_DEVICE_IDENTIFICATION) {
		if (o->json)
			list = json_array();
		for (uint32_t p = 4; p + 4 <= plen;) {
			uint8_t codeset = buf[p] & 0x0f, dtype = buf[p + 1] & 0x0f, dlen = buf[p + 3];
			if (p + 4 + dlen > plen)
				break;
			char val[600];
			if (codeset == CODE_SET_ASCII || codeset == CODE_SET_UTF8)
				trimmed(buf + p + 4, dlen, val);
			else
				hex(buf + p + 4, dlen, val);
			if (o->json) {
				json_t *d = json_object();
				json_object_set_new(d, "type", jstr(designator_type(dtype)));
				json_object_set_new(d, "association", jnum((buf[p + 1] >> 4) & 3));
				json_object_set_new(d, "value", jstr(val));
				json_array_append_new(list, d);
			} else {
				printf("  %s: %s\n", designator_type(dtype), val);
			}
			p += 4 + dlen;
		}
		if (o->json)
			json_object_set_new(j, "designators", list);
	} else if (!o->json) {
		printf("  %s\n", hx);
	}
	if (o->json)
		jprint(j);
	free(hx);
out:
	cli_close_session(s);
	ism_url_free(u);
	return rc;
}
