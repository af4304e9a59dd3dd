/* io_uring backend: not built yet; the engine runs on its workers. */
#include <stdlib.h>

#include "store/engine_int.h"
#include "util/sbuf.h"

struct engine_uring *engine_uring_new(unsigned depth, int *efd, char **why)
{
	(void)depth;
	*efd = -1;
	*why = xasprintf("not built in");
	return NULL;
}

void engine_uring_free(struct engine_uring *u) { (void)u; }

bool engine_uring_submit(struct engine_uring *u, struct store_io *io)
{
	(void)u;
	(void)io;
	return false;
}

void engine_uring_reap(struct engine_uring *u) { (void)u; }
