/* lifecycle.c: a workspace's status (online, awaiting_agent, degraded, paused, removed) and the sweep that finds silent agents. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake.h"

const char *ws_status(const struct workspace *w)
{
	if (w->removed_ns >= 0)
		return "removed";
	if (w->paused)
		return "paused";
	if (w->error_degraded || now_ms() < w->degraded_until_ms)
		return "degraded";
	return w->awaiting ? "awaiting_agent" : "online";
}

void ws_heard_from(struct workspace *w)
{
	w->last_alive_ms = now_ms();
	w->awaiting = false;
}

void ws_register_failed(struct workspace *w)
{
	w->degraded_until_ms = now_ms() + platform.degraded_ms;
}

/* The next register mints a new token; until then the old one is refused everywhere. */
void ws_revoke(struct workspace *w)
{
	free(w->token);
	w->token = NULL;
}

void ws_remove(struct workspace *w)
{
	ws_revoke(w);
	if (w->removed_ns < 0)
		w->removed_ns = wall_ns();
}

size_t sweep_once(void)
{
	int64_t now = now_ms();
	size_t marked = 0;

	for (size_t i = 0; i < platform.nws; i++) {
		struct workspace *w = platform.ws[i];
		if (!w->awaiting && now - w->last_alive_ms >= platform.awaiting_after_ms) {
			w->awaiting = true;
			marked++;
		}
	}
	return marked;
}

/* The sweeper thread: one sweep every sweep_ms, as the platform's own runs every 15 s. */
static pthread_t sweeper;
static bool sweeper_running;

static void *sweeper_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&state_lock);
	while (!atomic_load(&stopping)) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		int64_t ns = until.tv_nsec + (platform.sweep_ms % 1000) * 1000000L;
		until.tv_sec += platform.sweep_ms / 1000 + ns / 1000000000L;
		until.tv_nsec = ns % 1000000000L;
		int rc = 0;
		while (!atomic_load(&stopping) && rc != ETIMEDOUT)
			rc = pthread_cond_timedwait(&state_changed, &state_lock, &until);
		if (!atomic_load(&stopping))
			sweep_once();
	}
	pthread_mutex_unlock(&state_lock);
	return NULL;
}

void sweeper_start(void)
{
	if (platform.sweep_ms <= 0)
		return;
	if (pthread_create(&sweeper, NULL, sweeper_main, NULL) != 0)
		die("cannot start the sweeper thread");
	sweeper_running = true;
}

/* Called once stopping is set. */
void sweeper_stop(void)
{
	if (!sweeper_running)
		return;
	pthread_mutex_lock(&state_lock);
	pthread_cond_broadcast(&state_changed);
	pthread_mutex_unlock(&state_lock);
	pthread_join(sweeper, NULL);
	sweeper_running = false;
}
