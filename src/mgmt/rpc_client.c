#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "mgmt/rpc.h"
#include "util/sbuf.h"

/* The longest answer taken from a daemon (session lists of big targets stay far below it). */
#define RPC_MAX_ANSWER (64u << 20)

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static json_t *call_fail(int *code, char **errmsg, int c, char *msg)
{
	if (code)
		*code = c;
	*errmsg = msg;
	return NULL;
}

json_t *rpc_call(const char *path, const char *method, json_t *params, int timeout_ms, int *code, char **errmsg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (code)
		*code = 0;
	if (strlen(path) >= sizeof(sa.sun_path)) {
		json_decref(params);
		return call_fail(code, errmsg, 0, xasprintf("socket path too long: %s", path));
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		json_decref(params);
		return call_fail(code, errmsg, 0, xasprintf("cannot reach the daemon at %s: %s", path, strerror(e)));
	}
	json_t *req = json_object();
	json_object_set_new(req, "jsonrpc", json_string("2.0"));
	json_object_set_new(req, "method", json_string(method));
	if (params)
		json_object_set_new(req, "params", params);
	json_object_set_new(req, "id", json_integer(1));
	char *text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	struct sbuf out = {0};
	sbuf_append(&out, text, strlen(text));
	sbuf_putc(&out, '\n');
	free(text);
	long deadline = now_ms() + timeout_ms;
	size_t off = 0;
	struct sbuf in = {0};
	size_t scanned = 0; /* bytes of in known to hold no newline */
	json_t *result = NULL;
	char *err = NULL;
	int ecode = 0;
	for (;;) {
		long left = deadline - now_ms();
		if (left <= 0) {
			err = xasprintf("no answer from the daemon within %d ms", timeout_ms);
			break;
		}
		struct pollfd pfd = {.fd = fd, .events = off < out.len ? POLLOUT : POLLIN};
		int n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			continue;
		if (off < out.len) {
			ssize_t w = send(fd, out.data + off, out.len - off, MSG_NOSIGNAL);
			if (w < 0) {
				err = xasprintf("write to the daemon: %s", strerror(errno));
				break;
			}
			off += (size_t)w;
			continue;
		}
		char buf[65536];
		ssize_t r = read(fd, buf, sizeof(buf));
		if (r <= 0) {
			err = xasprintf("the daemon closed the connection");
			break;
		}
		sbuf_append(&in, buf, (size_t)r);
		uint8_t *nl = memchr(in.data + scanned, '\n', in.len - scanned);
		if (!nl) {
			scanned = in.len;
			if (in.len > RPC_MAX_ANSWER) {
				err = xasprintf("the daemon's answer is longer than %u bytes", RPC_MAX_ANSWER);
				break;
			}
			continue;
		}
		json_error_t jerr;
		json_t *resp = json_loadb((const char *)in.data, (size_t)(nl - in.data), 0, &jerr);
		if (!resp) {
			err = xasprintf("bad answer from the daemon: %s", jerr.text);
			break;
		}
		json_t *e = json_object_get(resp, "error");
		if (e) {
			ecode = (int)json_integer_value(json_object_get(e, "code"));
			const char *m = json_string_value(json_object_get(e, "message"));
			err = xstrdup(m ? m : "unknown error");
		} else {
			result = json_incref(json_object_get(resp, "result"));
			if (!result)
				err = xstrdup("answer without a result");
		}
		json_decref(resp);
		break;
	}
	close(fd);
	sbuf_free(&out);
	sbuf_free(&in);
	if (err)
		return call_fail(code, errmsg, ecode, err);
	return result;
}
