/* events.c: the platform's event stream as a wake-up: open, read, reconnect with backoff, fall back to polling, trust. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "events.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "pace.h"
#include "platform.h"
#include "util.h"

/*
 * The stream says when a row is logged, never which: it is a hint to poll now,
 * and the poll stays the source of truth. Events can be lost (a full buffer on
 * the platform, another server replica), so the stream is trusted only while
 * it keeps up: a timer poll that finds messages no event announced makes the
 * timer fast again until an event comes, and a few of those in a row reconnect.
 */

void events_init(struct bridge *b)
{
	struct events *ev = &b->events;
	memset(ev, 0, sizeof *ev);
	sse_init(&ev->parser, EVENTS_LINE_MAX, NULL, NULL);
	/* --once reads what is there and leaves: nothing to wake. */
	ev->state = b->s->events == EVENTS_OFF || b->s->once ? EV_OFF : EV_IDLE;
	ev->trusted = true;
}

void events_stop(struct bridge *b)
{
	struct events *ev = &b->events;
	if (ev->req) {
		http_cancel(b->h, ev->req);
		ev->req = NULL;
	}
	ev->state = EV_OFF;
}

void events_free(struct bridge *b)
{
	events_stop(b);
	sse_free(&b->events.parser);
}

bool events_trusted(const struct bridge *b)
{
	return b->events.state == EV_UP && b->events.trusted;
}

int64_t events_first_wait(const struct bridge *b)
{
	const struct events *ev = &b->events;
	if (ev->ever_up || ev->failures > 0)
		return 0;
	if (ev->state == EV_OPENING)
		return ev->opened_at + EVENTS_FIRST_WAIT_MS;
	return 0;
}

/* ---- what the stream says --------------------------------------------- */

static void wake(struct bridge *b, const char *why)
{
	struct events *ev = &b->events;
	log_debug("event: %s: polling now", why);
	ev->event_seen = true;
	ev->trusted = true;
	ev->misses = 0;
	fetch_wake(b, now_ms());
}

/* An inbound message was logged: {"type":"ACTIVITY_LOGGED","data":{"activity_type":"a2a_receive",...}}. */
static bool announces_message(const char *data, size_t len)
{
	jv v = jv_parse_sized(data, (int)len);
	bool yes = false;
	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		jv type = jv_object_get(jv_copy(v), jv_string("type"));
		jv inner = jv_object_get(jv_copy(v), jv_string("data"));
		jv activity = jv_get_kind(inner) == JV_KIND_OBJECT
				      ? jv_object_get(jv_copy(inner), jv_string("activity_type"))
				      : jv_invalid();
		yes = jv_get_kind(type) == JV_KIND_STRING && strcmp(jv_string_value(type), "ACTIVITY_LOGGED") == 0 &&
		      jv_get_kind(activity) == JV_KIND_STRING &&
		      strcmp(jv_string_value(activity), "a2a_receive") == 0;
		jv_free(type);
		jv_free(inner);
		jv_free(activity);
	}
	jv_free(v);
	return yes;
}

static void on_event(void *ctx, const struct sse_event *e)
{
	struct bridge *b = ctx;
	b->events.stream_events++;
	if (e->truncated) {
		/* Too long to read (a large message comes with it): polling costs less than missing it. */
		wake(b, "an event too long to read");
		return;
	}
	if (announces_message(e->data, e->len))
		wake(b, "a message was logged");
	else
		log_debug("an event that announces no message: ignored");
}

static void on_data(void *ctx, const char *data, size_t len)
{
	struct bridge *b = ctx;
	struct events *ev = &b->events;
	if (ev->state == EV_OPENING) {
		int64_t now = now_ms();
		ev->state = EV_UP;
		ev->up_at = now;
		log_debug("the event stream is open");
		ev->ever_up = true;
		/* Rows logged while there was no stream announced nothing: one poll
		 * covers them. An untrusted stream leaves that to the fast timer. */
		if (ev->trusted)
			fetch_wake(b, now);
	}
	sse_feed(&ev->parser, data, len);
}

/* ---- connecting ------------------------------------------------------- */

static void on_done(void *ctx, const struct http_resp *r);

static void open_stream(struct bridge *b, int64_t now)
{
	struct events *ev = &b->events;
	char *path = xasprintf("/workspaces/%s/events/stream", b->s->workspace_id);
	struct http_opts o = {
		.method = "GET", .path = path, .as_workspace = true, .max_attempts = 1,
		.done = on_done, .stream = on_data, .ctx = b,
	};
	sse_reset(&ev->parser);
	ev->parser.fn = on_event;
	ev->parser.ctx = b;
	ev->req = http_start(b->h, &o);
	ev->state = EV_OPENING;
	ev->opened_at = now;
	ev->stream_events = 0;
	free(path);
}

static void give_up(struct bridge *b, const char *why)
{
	log_info("%s: polling every %g s (every %g s when quiet) instead", why, b->s->interval,
		 b->s->idle_interval > b->s->interval ? b->s->idle_interval : b->s->interval);
	b->events.state = EV_OFF;
}

/* An attempt failed (why: what happened). auto gives up after a few in a row;
 * on keeps trying, and says so now and then. */
static void failed(struct bridge *b, int64_t now, const char *why)
{
	struct events *ev = &b->events;
	ev->failures++;
	ev->state = EV_IDLE;
	int64_t delay = backoff_ms(ev->failures, 1000, 300000);
	ev->next_try = now + delay;
	if (b->s->events == EVENTS_AUTO) {
		if (ev->failures >= EVENTS_AUTO_FAILURES) {
			char *s = xasprintf("the event stream failed %d times in a row (%s)", ev->failures, why);
			give_up(b, s);
			free(s);
		} else {
			log_debug("event stream: %s; trying again in %lld ms", why, (long long)delay);
		}
		return;
	}
	if (!ev->warned_at || now - ev->warned_at >= EVENTS_WARN_EVERY_MS) {
		log_warn("event stream: %s; trying again in %lld s", why, (long long)(delay + 999) / 1000);
		ev->warned_at = now;
	} else {
		log_debug("event stream: %s; trying again in %lld ms", why, (long long)delay);
	}
}

/* A stream that was open has ended: soon again, unless it keeps dying young. */
static void ended(struct bridge *b, int64_t now, const char *why)
{
	struct events *ev = &b->events;
	int64_t lived = now - ev->up_at;
	if (lived < EVENTS_YOUNG_MS && ev->stream_events == 0) {
		failed(b, now, why);
		return;
	}
	ev->failures = 0;
	ev->warned_at = 0;
	ev->ends = lived < EVENTS_SETTLED_MS ? ev->ends + 1 : 1;
	ev->state = EV_IDLE;
	int64_t delay = backoff_ms(ev->ends, 500, 30000);
	ev->next_try = now + delay;
	log_debug("the event stream ended after %lld s (%s): reconnecting in %lld ms", (long long)lived / 1000, why,
		  (long long)delay);
}

static void on_done(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	struct events *ev = &b->events;
	int64_t now = now_ms();
	bool was_up = ev->state == EV_UP;
	ev->req = NULL;
	if (ev->state == EV_OFF || b->phase != PH_RUN) {
		ev->state = EV_OFF;
		return;
	}
	char *why = r->status >= 200 && r->status < 300 ? xstrdup("closed by the platform") : platform_describe(r);
	if (was_up)
		ended(b, now, why);
	else if (r->status == 404 && b->s->events == EVENTS_AUTO)
		give_up(b, "the platform has no event stream (HTTP 404)");
	else
		failed(b, now, why);
	free(why);
}

/* A stream that carried an event or lived a while works: the failures are over. */
static bool proven(const struct events *ev, int64_t now)
{
	return ev->state == EV_UP && (ev->stream_events > 0 || now - ev->up_at >= EVENTS_YOUNG_MS);
}

void events_tick(struct bridge *b, int64_t now)
{
	struct events *ev = &b->events;
	if (ev->state == EV_OFF || b->phase != PH_RUN)
		return;
	if (ev->failures > 0 && proven(ev, now)) {
		if (ev->warned_at)
			log_info("the event stream works again");
		ev->failures = 0;
		ev->warned_at = 0;
	}
	if (ev->recycle) {
		ev->recycle = false;
		if (ev->req)
			http_cancel(b->h, ev->req);
		ev->req = NULL;
		log_debug("event stream: polls keep finding messages no event announced: reconnecting");
		ev->state = EV_IDLE;
		ev->next_try = now;
	}
	if (ev->state == EV_OPENING && now - ev->opened_at >= EVENTS_OPEN_TIMEOUT_MS) {
		http_cancel(b->h, ev->req);
		ev->req = NULL;
		failed(b, now, "no answer");
	}
	if (ev->state == EV_IDLE && now >= ev->next_try && now >= pace_deferrable_at(b, now))
		open_stream(b, now);
}

int64_t events_next_wakeup(struct bridge *b, int64_t now)
{
	struct events *ev = &b->events;
	if (ev->state == EV_OFF)
		return -1;
	if (ev->recycle)
		return 0;
	int64_t at = -1;
	if (ev->state == EV_OPENING)
		at = ev->opened_at + EVENTS_OPEN_TIMEOUT_MS;
	else if (ev->state == EV_UP && ev->failures > 0)
		at = ev->up_at + EVENTS_YOUNG_MS;
	else if (ev->state == EV_IDLE)
		at = ev->next_try > pace_deferrable_at(b, now) ? ev->next_try : pace_deferrable_at(b, now);
	/* Overdue is now: a negative wait would mean none. */
	return at < 0 ? -1 : at > now ? at - now : 0;
}

/* ---- keeping the stream honest ---------------------------------------- */

void events_poll_started(struct bridge *b, bool timer, int64_t prev_start)
{
	struct events *ev = &b->events;
	ev->announced = ev->event_seen;
	ev->event_seen = false;
	/* Only a timer poll with the stream open since before the last poll can
	 * tell that an event is missing: anything else found what it was sent for. */
	ev->covered = timer && ev->state == EV_UP && prev_start && ev->up_at <= prev_start;
}

void events_polled(struct bridge *b, int new_messages)
{
	struct events *ev = &b->events;
	if (new_messages <= 0 || ev->announced || !ev->covered || ev->state != EV_UP)
		return;
	ev->trusted = false;
	ev->misses++;
	log_debug("a poll found %d messages no event announced (%d in a row)", new_messages, ev->misses);
	int64_t now = now_ms();
	if (ev->misses >= EVENTS_MISSES && (!ev->recycled_at || now - ev->recycled_at >= EVENTS_RECYCLE_MS)) {
		/* Perhaps served by another replica: a new connection may land elsewhere. */
		ev->misses = 0;
		ev->recycle = true;
		ev->recycled_at = now;
	}
}
