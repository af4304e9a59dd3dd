/*
 * The shards' mailbox and pause (src/target/shard.c) on real threads: messages run on the
 * shard they are posted to, in order, each once; while loop 0 holds the other shards paused,
 * none of them runs anything, so loop 0 may read and write what they own without a lock; after
 * resume they run again; pauses nest. Built with ThreadSanitizer (tests/run.sh tsan) an
 * unsynchronized access fails it: the counters below are plain integers on purpose.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../tsan_options.h"
#include "net/loop.h"
#include "target/server.h"
#include "target/shard.h"

#define NSHARDS 4
#define NMSGS 2000
#define PAUSES 40

static int failures;
#define CHECK(cond, ...)                                          \
	do {                                                      \
		if (!(cond)) {                                    \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);             \
			fputc('\n', stderr);                      \
			failures++;                               \
		}                                                 \
	} while (0)

/* What each shard owns: touched by its thread, and by loop 0 only while it is paused. */
struct owned {
	struct shard *sh;
	unsigned long msgs;      /* messages run */
	unsigned long last_seq;  /* the last message's number: they come in order */
	bool out_of_order, wrong_thread;
	unsigned long ticks;     /* timer turns: work the shard does on its own */
	struct loop_timer timer;
};
static struct owned owned[NSHARDS];
static atomic_uint done_count;

struct msg {
	struct owned *o;
	unsigned long seq;
};

static void on_msg(void *arg)
{
	struct msg *m = arg;
	struct owned *o = m->o;
	if (!pthread_equal(pthread_self(), o->sh->thread))
		o->wrong_thread = true;
	if (m->seq != o->last_seq + 1)
		o->out_of_order = true;
	o->last_seq = m->seq;
	o->msgs++;
	free(m);
}

static void on_done(void *arg)
{
	(void)arg;
	atomic_fetch_add(&done_count, 1);
}

static void on_tick(void *arg)
{
	struct owned *o = arg;
	o->ticks++;
}

static void start_ticking(void *arg)
{
	struct owned *o = arg;
	loop_timer_start(o->sh->loop, &o->timer, 1, 1, on_tick, o);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static bool wait_done(unsigned want)
{
	for (int i = 0; i < 5000; i++) {
		if (atomic_load(&done_count) >= want)
			return true;
		sleep_ms(1);
	}
	return false;
}

int main(void)
{
	static struct server srv;
	char *err = NULL;
	srv.loop = loop_new();
	if (!srv.loop || server_shards_init(&srv, &err) < 0) {
		fprintf(stderr, "setup: %s\n", err ? err : "loop");
		return 1;
	}
	srv.shards = realloc(srv.shards, NSHARDS * sizeof(*srv.shards));
	for (unsigned i = 1; i < NSHARDS; i++) {
		srv.shards[i] = shard_new(&srv, i, NULL);
		if (!srv.shards[i]) {
			fprintf(stderr, "shard %u\n", i);
			return 1;
		}
		srv.nshards++;
		owned[i].sh = srv.shards[i];
	}
	for (unsigned i = 1; i < NSHARDS; i++)
		if (shard_thread_start(srv.shards[i], &err) < 0) {
			fprintf(stderr, "%s\n", err);
			return 1;
		}

	printf("checking: %d messages to each of %d shards run once each, in order, on the shard's thread\n", NMSGS,
	       NSHARDS - 1);
	for (unsigned long seq = 1; seq <= NMSGS; seq++)
		for (unsigned i = 1; i < NSHARDS; i++) {
			struct msg *m = malloc(sizeof(*m));
			*m = (struct msg){&owned[i], seq};
			shard_post(srv.shards[i], on_msg, m);
		}
	for (unsigned i = 1; i < NSHARDS; i++)
		shard_post(srv.shards[i], on_done, NULL);
	CHECK(wait_done(NSHARDS - 1), "the shards did not run their messages");
	server_pause_shards(&srv);
	for (unsigned i = 1; i < NSHARDS; i++) {
		CHECK(owned[i].msgs == NMSGS, "shard %u ran %lu messages", i, owned[i].msgs);
		CHECK(!owned[i].out_of_order, "shard %u ran messages out of order", i);
		CHECK(!owned[i].wrong_thread, "shard %u ran a message on another thread", i);
	}
	server_resume_shards(&srv);

	printf("checking: %d pauses: paused shards do nothing, loop 0 writes what they own, they run again after\n",
	       PAUSES);
	for (unsigned i = 1; i < NSHARDS; i++)
		shard_post(srv.shards[i], start_ticking, &owned[i]);
	sleep_ms(20);
	for (int round = 0; round < PAUSES; round++) {
		unsigned long before[NSHARDS];
		server_pause_shards(&srv);
		server_pause_shards(&srv); /* nested: the inner pair changes nothing */
		for (unsigned i = 1; i < NSHARDS; i++)
			before[i] = owned[i].ticks;
		sleep_ms(3);
		server_resume_shards(&srv);
		for (unsigned i = 1; i < NSHARDS; i++) {
			CHECK(owned[i].ticks == before[i], "shard %u ran while paused (round %d)", i, round);
			owned[i].ticks = 0; /* a plain write: only safe because the shard is parked */
		}
		server_resume_shards(&srv);
		/* Running again: each shard ticks within a bounded time. */
		for (unsigned i = 1; i < NSHARDS; i++) {
			bool moved = false;
			for (int t = 0; t < 2000 && !moved; t++) {
				server_pause_shards(&srv);
				moved = owned[i].ticks > 0;
				server_resume_shards(&srv);
				if (!moved)
					sleep_ms(1);
			}
			CHECK(moved, "shard %u did not run after resume (round %d)", i, round);
		}
	}

	printf("checking: shards stop and are joined\n");
	for (unsigned i = 1; i < NSHARDS; i++)
		shard_post(srv.shards[i], on_done, NULL);
	for (unsigned i = 1; i < NSHARDS; i++) {
		shard_thread_stop(srv.shards[i]);
		loop_timer_stop(srv.shards[i]->loop, &owned[i].timer);
	}
	for (unsigned i = 0; i < NSHARDS; i++) {
		struct loop *l = srv.shards[i]->loop;
		loop_watch_del(l, &srv.shards[i]->mb_watch);
		shard_free(srv.shards[i]);
		if (i)
			loop_free(l);
	}
	loop_free(srv.loop);
	free(srv.shards);
	pthread_mutex_destroy(&srv.index_lock);
	pthread_mutex_destroy(&srv.pause_lock);
	pthread_cond_destroy(&srv.pause_cond);
	if (failures) {
		printf("%d check(s) failed\n", failures);
		return 1;
	}
	printf("all shard checks passed\n");
	return 0;
}
