/* fetch.c: the activity fetch: when to poll, the fetch window and its byte bound, the page cap, and each page's rows. */
#include <config.h>

#include <stdlib.h>

#include "bridge.h"
#include "http.h"
#include "inbox.h"
#include "log.h"
#include "outbox.h"
#include "pace.h"
#include "platform.h"
#include "rows.h"
#include "runlimit.h"
#include "timestamp.h"
#include "util.h"

#define REPLAY_SECS_MAX 2592000L          /* the platform's bound on since_secs: 30 days */
#define NS_PER_US 1000

/* ---- the rules -------------------------------------------------------- */

long fetch_window_for(long max_inflight, long row_bytes)
{
	long w = max_inflight, fit = row_bytes > 0 ? FETCH_WINDOW_BYTES / row_bytes : w;
	if (fit < w)
		w = fit > 0 ? fit : 1;
	return w;
}

bool fetch_room_for(long window, long unfinished, bool backlog)
{
	long room = window - unfinished;
	if (room <= 0)
		return false;
	if (!backlog)
		return true;
	return room >= (window + 1) / 2 || unfinished == 0;
}

long fetch_replay_secs(struct ts anchor, struct ts now, long since_secs)
{
	int64_t ms = ts_to_ms(now) - ts_to_ms(anchor);
	int64_t secs = ms > 0 ? (ms + 999) / 1000 : 1; /* rounded up */
	if (secs < since_secs)
		secs = since_secs;
	if (secs > REPLAY_SECS_MAX)
		secs = REPLAY_SECS_MAX;
	return (long)secs;
}

long fetch_limit_for(bool cold, long room, long row_bytes, long page_cap)
{
	long limit;
	if (cold) {
		limit = FETCH_COLD_LIMIT;
	} else {
		limit = room;
		if (limit > FETCH_MAX_LIMIT)
			limit = FETCH_MAX_LIMIT;
		/* The size of the rows is not known yet: a small first page. */
		if (row_bytes == 0 && limit > FETCH_FIRST_PAGE)
			limit = FETCH_FIRST_PAGE;
	}
	if (page_cap && limit > page_cap)
		limit = page_cap;
	return limit;
}

/* ---- the running bridge ----------------------------------------------- */

long fetch_window(struct bridge *b)
{
	return fetch_window_for(b->s->max_inflight, b->fetch.row_bytes);
}

static bool cold(struct bridge *b)
{
	return inbox_fetch_cursor(b->ib)[0] == '\0';
}

/* What the fetch window holds: messages not answered yet, and replies queued
 * for a destination that takes them promptly (a handler faster than the
 * platform must not pile up replies). *recheck_at: when that may shrink. */
static long in_window(struct bridge *b, int64_t *recheck_at)
{
	return inbox_unfinished(b->ib) + outbox_prompt_waiting(b->ob, now_ms(), recheck_at);
}

static bool wanted(struct bridge *b)
{
	int64_t recheck;
	return !b->fetch.req && runlimit_fetch_wanted(b) &&
	       fetch_room_for(fetch_window(b), in_window(b, &recheck), b->fetch.backlog);
}

/* A page too large to take is not asked for again as it was: on_poll asks
 * for fewer rows. */
static bool poll_retry(const struct http_resp *r)
{
	return !r->too_large && http_transient(r);
}

static void on_poll(void *ctx, const struct http_resp *r);

/* The seconds a replay by time reads back: to the inbox's anchor (the last
 * done row, or the first start's window), which a first start sets now. */
static long replay_secs(struct bridge *b)
{
	struct ts now = ts_now(), anchor;
	if (!inbox_replay_anchor(b->ib, &anchor)) {
		anchor = ts_add_ns(now, -(int64_t)b->s->since_secs * 1000000000);
		inbox_set_replay_from(b->ib, anchor);
	}
	return fetch_replay_secs(anchor, now, b->s->since_secs);
}

/* The answer, then what it means for when to poll next: the new messages it
 * brought are what on_poll added to the unfinished ones. */
static void on_answer(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	int before = inbox_unfinished(b->ib);
	on_poll(ctx, r);
	pace_polled(b, inbox_unfinished(b->ib) - before);
}

static void start(struct bridge *b, int64_t now)
{
	struct fetcher *p = &b->fetch;
	bool replay = cold(b);
	long secs = replay ? replay_secs(b) : 0;
	char before[TS_TEXT_MAX] = "";
	if (replay && p->paging_back) /* just after the bound: its time comes again, whole */
		ts_format(ts_add_ns(p->bound.at, NS_PER_US), before);
	int64_t recheck;
	long limit = fetch_limit_for(replay, fetch_window(b) - in_window(b, &recheck), p->row_bytes, p->page_cap);
	char *path = platform_activity_path(b->s->workspace_id, replay ? NULL : inbox_fetch_cursor(b->ib), secs,
					    before[0] ? before : NULL, limit);
	struct http_opts o = {
		.method = "GET", .path = path, .max_attempts = 0, .retry = poll_retry,
		.done = on_answer, .ctx = b,
	};
	p->req = http_start(b->h, &o);
	p->limit = limit;
	pace_poll_started(b, now);
	p->failures = 0;
	free(path);
}

/* A full replay page (not consumed) with older rows possibly beyond it: true
 * when it is dropped and the next page asked before it. false: it is the
 * last page of the replay (it reaches the last done row, or it cannot be
 * paged past). */
static bool page_back(struct bridge *b, jv rows, int64_t now)
{
	struct fetcher *p = &b->fetch;
	struct row_key oldest = { .has_at = false }, floor;
	jv_array_foreach(rows, i, row) {
		struct row_key k = rows_key(row);
		if (k.has_at && (!oldest.has_at || rows_key_cmp(&k, &oldest) < 0))
			oldest = k;
		jv_free(row);
	}
	if (!oldest.has_at) {
		log_warn("a full page of activity rows without times cannot be read back past: older rows in the window are not handed out");
		return false;
	}
	if (inbox_floor(b->ib, &floor) && rows_key_cmp(&oldest, &floor) <= 0)
		return false; /* everything older is done */
	if (p->paging_back && rows_key_cmp(&oldest, &p->bound) >= 0) {
		char at[TS_TEXT_MAX];
		ts_format(oldest.at, at);
		log_warn("more than %ld activity rows share the time %s: older rows in the window are not handed out",
			 p->limit, at);
		return false;
	}
	p->paging_back = true;
	p->bound = oldest;
	p->pages_back++;
	p->next = now;
	if (log_enabled(LV_DEBUG) && once_per(&p->progress_at, now, LOG_PROGRESS_EVERY_MS)) {
		/* A long backlog is read quickly: a line a second says how far. */
		char at[TS_TEXT_MAX];
		ts_format(oldest.at, at);
		log_debug("replay: %ld full pages read back, now before %s", p->pages_back, at);
	}
	return true;
}

static void on_poll(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	struct fetcher *p = &b->fetch;
	p->req = NULL;
	int64_t now = now_ms();
	bool replay = cold(b);
	if (r->status == 410) {
		log_warn("the platform no longer knows the cursor (HTTP 410, pruned?): replaying by time from the last done message");
		inbox_reseed(b->ib);
		p->paging_back = false;
		p->next = now;
		return;
	}
	if (r->too_large && p->limit > 1) {
		/* More than the bridge takes in one answer: the same page in halves,
		 * until one goes through. */
		p->page_cap = p->limit / 2;
		log_warn("a page of %ld activity rows is larger than 64 MiB: asking for %ld at a time", p->limit,
			 p->page_cap);
		p->next = now;
		return;
	}
	char *org = platform_org_refusal(r, b->s->org_id);
	if (org) {
		/* A configuration error: no retry mends it. */
		log_error("reading the activity of workspace %s refused: %s", b->s->workspace_id, org);
		free(org);
		bridge_stop(b, MC_EXIT_USAGE, "org id refused");
		return;
	}
	if (r->status < 200 || r->status >= 300) {
		char *why = platform_describe(r);
		if (!p->polled_once && (r->status == 401 || r->status == 403 || r->status == 404)) {
			log_error("reading the activity of workspace %s refused (%s): %s", b->s->workspace_id, why,
				  r->status == 404 ? "check --api-url and, on a multi-tenant platform, --org-id"
						   : "check MOLECULE_WORKSPACE_TOKEN or --token-file");
			free(why);
			bridge_stop(b, MC_EXIT_USAGE, "activity refused");
			return;
		}
		p->failures++;
		log_warn("poll failed (%s)", why);
		free(why);
		p->next = now + backoff_ms(p->failures, 1000, 60000);
		return;
	}
	jv rows = rows_parse(r->body, r->len);
	if (!jv_is_valid(rows)) {
		jv msg = jv_invalid_get_msg(rows);
		log_error("%s", jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "bad activity answer");
		jv_free(msg);
		p->failures++;
		p->next = now + backoff_ms(p->failures, 1000, 60000);
		return;
	}
	p->polled_once = true;
	p->page_cap = 0;
	int n = jv_array_length(jv_copy(rows));
	if (n > 0)
		p->row_bytes = (long)(r->len / (size_t)n);
	if (replay && n >= p->limit && page_back(b, rows, now)) {
		jv_free(rows);
		return;
	}
	bool was_paging = replay && p->paging_back;
	rows = rows_oldest_first(rows, replay);
	int queued = inbox_add_rows(b->ib, rows);
	log_debug("poll: %d rows, %d new messages", n, queued);
	p->backlog = !replay && n >= p->limit;
	/* A replay's last page after reading back: what came after it waits. */
	p->caught_up = !p->backlog && !was_paging;
	if (was_paging) {
		p->paging_back = false;
		p->pages_back = 0;
		if (n == 0)
			log_warn("the oldest page of the replay came back empty (rows pruned meanwhile?): reading the window again");
	}
	if (p->backlog || was_paging) {
		/* More is waiting. Fetch again as soon as the window has room for a
		 * useful page, not after the poll interval. */
		p->next = now;
	}
	if (!replay && n == 0)
		inbox_caught_up(b->ib);
	if (p->caught_up)
		inbox_fetch_complete(b->ib); /* kept replies whose rows did not come back can go */
	outbox_touch(b->ob);
}

void fetch_tick(struct bridge *b, int64_t now)
{
	if (wanted(b) && now >= pace_poll_at(b, now))
		start(b, now);
}

int64_t fetch_next_wakeup(struct bridge *b, int64_t now)
{
	if (!wanted(b)) {
		/* Held by replies to a destination that may stop being prompt: look again then. */
		int64_t recheck;
		if (!b->fetch.req && runlimit_fetch_wanted(b) &&
		    !fetch_room_for(fetch_window(b), in_window(b, &recheck), b->fetch.backlog) &&
		    recheck)
			return recheck > now ? recheck - now : 0;
		return -1;
	}
	/* Due since this turn began: now, not "never" (a negative wait is none). */
	int64_t at = pace_poll_at(b, now);
	return at > now ? at - now : 0;
}

void fetch_wake(struct bridge *b, int64_t at)
{
	b->fetch.next = at;
}

void fetch_cancel(struct bridge *b)
{
	if (b->fetch.req) {
		http_cancel(b->h, b->fetch.req);
		b->fetch.req = NULL;
	}
}

bool fetch_caught_up(const struct bridge *b)
{
	return b->fetch.caught_up && !b->fetch.req;
}
