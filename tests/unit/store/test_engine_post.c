/*
 * store_engine_post: calls posted from several threads at once all run, once each, on the
 * engine's thread, in each poster's order; a burst posted while the engine's thread is busy
 * runs at its next reap; a reap nested in a posted call (a done callback that closes a store
 * and drains its engine) neither loses nor repeats the calls the outer one still had to run.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "../test.h"
#include "store/store_io.h"

#define POSTERS 4
#define PER_POSTER 20000

struct node {
	struct store_engine_post p;
	int poster, seq;
	int runs;
};

static struct store_engine *eng;
static pthread_t engine_thread;
static int ran, wrong_thread, out_of_order, nested_reaps;
static int last_seq[POSTERS + 1];
static struct node nodes[POSTERS][PER_POSTER];

static void node_run(struct store_engine_post *p)
{
	struct node *n = (struct node *)p;

	if (!pthread_equal(pthread_self(), engine_thread))
		wrong_thread++;
	if (n->seq != last_seq[n->poster] + 1)
		out_of_order++;
	last_seq[n->poster] = n->seq;
	n->runs++;
	ran++;
	/* Now and then, a reap from inside a posted call. */
	if (n->seq % 997 == 0) {
		nested_reaps++;
		store_engine_reap(eng);
	}
}

static void *poster(void *arg)
{
	int id = (int)(intptr_t)arg;

	for (int i = 0; i < PER_POSTER; i++) {
		struct node *n = &nodes[id][i];
		n->poster = id;
		n->seq = i;
		n->p.fn = node_run;
		store_engine_post(eng, &n->p);
	}
	return NULL;
}

static void reap_for(int want, int ms)
{
	for (int i = 0; ran < want && i < ms / 10; i++) {
		struct pollfd p = {.fd = store_engine_fd(eng), .events = POLLIN};
		if (poll(&p, 1, 10) > 0)
			store_engine_reap(eng);
	}
}

int main(void)
{
	struct store_engine_params params = {.backend = STORE_BACKEND_WORKERS};
	char *err = NULL;
	pthread_t th[POSTERS];

	eng = store_engine_new(&params, &err);
	CHECK(eng != NULL);
	if (!eng)
		TEST_MAIN_END();
	engine_thread = pthread_self();
	for (int i = 0; i <= POSTERS; i++)
		last_seq[i] = -1;

	printf("checking: %d threads post %d calls each while the engine reaps\n", POSTERS, PER_POSTER);
	for (int i = 0; i < POSTERS; i++)
		pthread_create(&th[i], NULL, poster, (void *)(intptr_t)i);
	reap_for(POSTERS * PER_POSTER, 30000);
	for (int i = 0; i < POSTERS; i++)
		pthread_join(th[i], NULL);
	reap_for(POSTERS * PER_POSTER, 5000);
	CHECK_EQ(ran, POSTERS * PER_POSTER);
	CHECK_EQ(wrong_thread, 0);
	CHECK_EQ(out_of_order, 0);
	CHECK(nested_reaps > 0);
	int twice = 0;
	for (int i = 0; i < POSTERS; i++)
		for (int j = 0; j < PER_POSTER; j++)
			twice += nodes[i][j].runs != 1;
	CHECK_EQ(twice, 0);

	printf("checking: a burst posted while the engine is busy runs at one reap\n");
	static struct node burst[100];
	for (int i = 0; i < 100; i++) {
		burst[i] = (struct node){.p.fn = node_run, .poster = POSTERS, .seq = i};
		store_engine_post(eng, &burst[i].p);
	}
	int before = ran;
	struct pollfd p = {.fd = store_engine_fd(eng), .events = POLLIN};
	CHECK_EQ(poll(&p, 1, 1000), 1);
	store_engine_reap(eng);
	CHECK_EQ(ran - before, 100);
	CHECK_EQ(poll(&p, 1, 0), 0); /* nothing left to wake the loop for */

	printf("checking: calls still posted when the engine is freed run then\n");
	static struct node late;
	late = (struct node){.p.fn = node_run, .poster = POSTERS, .seq = 100};
	store_engine_post(eng, &late.p);
	store_engine_free(eng);
	CHECK_EQ(late.runs, 1);
	TEST_MAIN_END();
}
