/* loop.c: the event loop: register, heartbeat, poll, hand out, read replies,
 * save, and shut down; one thread over libcurl's multi interface. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include "loop.h"
#include "linebuf.h"
#include "outchan.h"
#include "http.h"
#include "inbox.h"
#include "jqprog.h"
#include "log.h"
#include "outbox.h"
#include "parts.h"
#include "platform.h"
#include "reply.h"
#include "rows.h"
#include "state.h"
#include "json.h"
#include "util.h"
#include "child.h"
#include <sys/wait.h>

#define REPLY_LINE_MAX (4u << 20)       /* a reply line: 4 MiB, above the 1 MiB post cap */
#define POST_BODY_MAX (1u << 20)        /* the platform's request body cap */
/* Rows per replay-by-time page: the platform's cap. The replay comes newest
 * first and cannot be paged back, so anything smaller would drop the oldest
 * messages of a larger backlog inside the --since-secs window. */
#define COLD_LIMIT 500
#define MAX_LIMIT 500                   /* the platform's page cap */
#define SAVE_EVERY_MS 200               /* coalesce state saves while busy */
#define REPLY_SAVE_MS 50                /* a reply read and not posted is saved within this */
#define WINDOW_BYTES (4L << 20)         /* the fetch window holds about this much activity at most */
#define FIRST_PAGE 4                    /* rows asked for while their size is unknown */
#define ERROR_TEXT_MAX 500
#define EXEC_OUTPUT_MAX (1u << 20)      /* what one --exec child may print */
#define STABLE_CHILD_MS 10000           /* a co-process that lived this long was not failing */
#define KILL_GRACE_MS 2000              /* SIGTERM to SIGKILL at shutdown */

enum mode { MODE_FILTER, MODE_COPROC, MODE_EXEC };

/* One --exec child and the message it handles. */
struct job {
	struct job *next;
	struct proc p;
	char msg_id[UUID_LEN + 1];
	struct buf input;        /* still to write to its stdin */
	size_t input_off;
	struct buf output;       /* what it printed */
	bool too_much;
	bool timed_out;
	int64_t deadline;
};

enum phase { PH_REGISTER, PH_RUN, PH_DRAIN, PH_END };

#define ERROR_BUCKETS 60               /* seconds in the error-rate window */
struct bucket { int64_t sec; long ok, errors; };

struct bridge {
	struct settings *s;
	enum mode mode;
	struct proc co;          /* the co-process */
	int64_t co_restart_at;   /* 0: no restart pending */
	int co_failures;         /* quick deaths in a row */
	int co_last_status;
	struct job *jobs;
	int njobs;
	struct http *h;
	struct inbox *ib;
	struct outbox *ob;
	jv st;
	int lock_fd;
	struct jqprog *filter, *reply_filter;
	struct outchan out;
	int in_fd;
	bool in_eof;
	struct linebuf lb;
	long line_no;
	int sig_fd;
	enum phase phase;
	int exit_status;
	bool polled_once;        /* a poll has succeeded (401/403 are fatal before) */
	bool once_fetched;       /* --once: the one poll is done */
	bool posts_only;         /* draining: no handler will answer any more */
	int signals;
	int64_t started, next_poll, next_heartbeat, drain_deadline, last_save, cold_since;
	int64_t dirty_since;            /* when unsaved changes were first seen (0: none) */
	int64_t unsaved_since;          /* when replies not in the state file were first seen (0: none) */
	bool in_nonblock;               /* in_fd is ours and non-blocking: drain it */
	int poll_failures;
	struct http_req *poll_req;
	long poll_limit;         /* the page size asked for: a full page means more may wait */
	long row_bytes;          /* average size of an activity row in the last page (0: none yet) */
	long page_cap;           /* at most this many rows a page after one too large to take (0: none) */
	bool backlog;            /* the last page was full */
	bool heartbeat_busy;
	long handed_out;
	struct bucket buckets[ERROR_BUCKETS];
	char *sample_error;
	int save_failures;       /* in a row */
	int64_t save_warned;     /* when a failed save was last reported */
};

/* ---- error rate over a rolling minute ---- */

/* Outcomes are counted in one-second buckets: memory stays the same however
 * many messages a minute brings. */
static struct bucket *bucket_at(struct bridge *b, int64_t now)
{
	int64_t sec = now / 1000;
	struct bucket *k = &b->buckets[sec % ERROR_BUCKETS];
	if (k->sec != sec)
		*k = (struct bucket){ .sec = sec };
	return k;
}

static void record(struct bridge *b, bool err, const char *why)
{
	struct bucket *k = bucket_at(b, now_ms());
	if (err) {
		k->errors++;
		if (why) {
			free(b->sample_error);
			b->sample_error = xstrndup(why, 200);
		}
	} else {
		k->ok++;
	}
}

static double error_rate(struct bridge *b, int64_t now)
{
	long errs = 0, all = 0;
	for (int i = 0; i < ERROR_BUCKETS; i++) {
		const struct bucket *k = &b->buckets[i];
		if (now / 1000 - k->sec < ERROR_BUCKETS) {
			errs += k->errors;
			all += k->errors + k->ok;
		}
	}
	if (errs == 0) {
		free(b->sample_error);
		b->sample_error = NULL;
	}
	return all ? (double)errs / (double)all : 0;
}

/* ---- state ---- */

/* When the next save is due (a time in now_ms() terms), or -1 for none. Saves
 * are coalesced: a reply goes to the platform at once, and is written to the
 * state file only if it is still unposted REPLY_SAVE_MS after it was read
 * (posts usually take far less); other changes wait up to SAVE_EVERY_MS. A
 * crash before that save leaves its message not done: it is handed out again,
 * never lost. */
static int64_t save_due(struct bridge *b, int64_t now)
{
	if (inbox_unsaved_replies(b->ib) == 0)
		b->unsaved_since = 0;
	else if (b->unsaved_since == 0)
		b->unsaved_since = now;
	if (!inbox_dirty(b->ib)) {
		b->dirty_since = 0;
		return -1;
	}
	if (b->dirty_since == 0)
		b->dirty_since = now;
	int64_t due = b->dirty_since + SAVE_EVERY_MS;
	if (b->unsaved_since && b->unsaved_since + REPLY_SAVE_MS < due)
		due = b->unsaved_since + REPLY_SAVE_MS;
	return due;
}

static void save_state(struct bridge *b, bool force)
{
	int64_t now = now_ms();
	int64_t due = save_due(b, now);
	if (!force && (due < 0 || now < due))
		return;
	b->st = inbox_state(b->ib, b->st);
	b->unsaved_since = b->dirty_since = 0;
	char *err = NULL;
	if (state_save(b->s->state_dir, b->s->workspace_id, b->st, &err) != 0) {
		/* Nothing is lost: the saved cursor just stays behind. Say so, not in
		 * a flood (once a minute while it lasts), and always at the last save. */
		bool say = ++b->save_failures == 1 || now - b->save_warned >= 60000;
		if (b->phase == PH_END)
			log_error("%s: the state is not saved at exit; messages done since the last save will be handed out again",
				  err);
		else if (say)
			log_error("%s (the cursor is not moving on disk; messages may be handed out again after a restart%s)",
				  err, b->save_failures > 1 ? "; still failing" : "");
		if (say)
			b->save_warned = now;
		free(err);
		inbox_mark_dirty(b->ib);
	} else if (b->save_failures) {
		char *path = xasprintf("%s/%s.json", b->s->state_dir, b->s->workspace_id);
		log_info("state file %s writable again after %d failed saves: the cursor on disk is current", path,
			 b->save_failures);
		free(path);
		b->save_failures = 0;
	}
	b->last_save = now;
}

/* ---- shutdown ---- */

static void begin_drain(struct bridge *b, const char *why, bool posts_only)
{
	if (posts_only)
		b->posts_only = true;
	if (b->phase == PH_DRAIN || b->phase == PH_END)
		return;
	log_debug("stopping: %s", why);
	if (b->phase == PH_REGISTER) {
		b->phase = PH_END;
		return;
	}
	b->phase = PH_DRAIN;
	if (b->poll_req) {
		/* Its rows stay on the platform: the cursor has not moved past them. */
		http_cancel(b->h, b->poll_req);
		b->poll_req = NULL;
	}
	b->drain_deadline = now_ms() + (int64_t)(b->s->drain_timeout * 1000);
}

static bool drained(struct bridge *b)
{
	if (outbox_unposted(b->ob) > 0)
		return false;
	/* The co-process got end of input: let it finish on its own. */
	if (b->mode == MODE_COPROC && b->co.pid > 0)
		return false;
	if (b->posts_only)
		return true;
	return inbox_open_count(b->ib) == 0;
}

/* ---- register ---- */

static void start_heartbeat(struct bridge *b);

static void on_register(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	bool ok = r->status >= 200 && r->status < 300;
	char *tok = ok ? platform_adopted_token(r->body, r->len) : NULL;
	if (tok) {
		/* First registration: the platform hands out the workspace's token
		 * once. Keep it (0600 state file) or the workspace is lost, even when
		 * the bridge is already stopping. */
		log_add_secret(tok);
		http_set_token(b->h, tok);
		free(b->s->token);
		b->s->token = tok;
		b->st = jv_object_set(b->st, jv_string("auth_token"), jv_string(tok));
		log_info("adopted the workspace token handed out at first registration (kept in the state file)");
		save_state(b, true);
	}
	if (b->phase != PH_REGISTER)
		return; /* stopped meanwhile */
	if (ok) {
		log_info("registered workspace %s at %s", b->s->workspace_id, b->s->api_url);
		b->phase = PH_RUN;
		b->next_poll = now_ms();
		start_heartbeat(b);
		return;
	}
	char *why = platform_describe(r);
	const char *hint =
		r->status == 401 || r->status == 403 ? "check MOLECULE_WORKSPACE_TOKEN or --token-file, and that the token belongs to this workspace"
		: r->status == 404 ? "check --api-url and, on a multi-tenant platform, --org-id"
		: r->status == 400 ? "check --agent-card"
		: "check the platform";
	log_error("registration of workspace %s refused (%s): %s", b->s->workspace_id, why, hint);
	free(why);
	b->exit_status = 1;
	b->phase = PH_END;
}

static void start_register(struct bridge *b)
{
	char *body = platform_register_body(b->s->workspace_id, b->s->agent_card);
	struct http_opts o = {
		.method = "POST", .path = "/registry/register", .body = body, .body_len = strlen(body),
		.max_attempts = 0, .done = on_register, .ctx = b,
	};
	http_start(b->h, &o);
	free(body);
}

/* ---- heartbeat ---- */

static void on_heartbeat(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	b->heartbeat_busy = false;
	if (r->status < 200 || r->status >= 300) {
		char *why = platform_describe(r);
		log_warn("heartbeat failed (%s)", why);
		free(why);
	}
}

static void start_heartbeat(struct bridge *b)
{
	int64_t now = now_ms();
	b->next_heartbeat = now + (int64_t)(b->s->heartbeat * 1000);
	if (b->heartbeat_busy)
		return;
	struct message *oldest = inbox_oldest_active(b->ib);
	struct heartbeat_info hb = {
		.uptime_seconds = (now - b->started) / 1000,
		.active_tasks = inbox_open_count(b->ib),
		.error_rate = error_rate(b, now),
		.sample_error = b->sample_error,
		.current_task = oldest && oldest->summary ? oldest->summary : "",
	};
	char *body = platform_heartbeat_body(b->s->workspace_id, &hb);
	struct http_opts o = {
		.method = "POST", .path = "/registry/heartbeat", .body = body, .body_len = strlen(body),
		.max_attempts = 1, .done = on_heartbeat, .ctx = b,
	};
	b->heartbeat_busy = true;
	http_start(b->h, &o);
	free(body);
}

/* ---- poll ---- */

static bool want_more(struct bridge *b)
{
	if (b->s->max_messages && b->handed_out + inbox_unfinished(b->ib) >= b->s->max_messages)
		return false;
	return !b->once_fetched;
}

/* The fetch window: --max-inflight messages, fewer when they are large, so
 * that memory follows the window and not the size of what waits. */
static long window(struct bridge *b)
{
	long w = b->s->max_inflight, fit = b->row_bytes > 0 ? WINDOW_BYTES / b->row_bytes : w;
	if (fit < w)
		w = fit > 0 ? fit : 1;
	return w;
}

static long window_room(struct bridge *b)
{
	return window(b) - inbox_unfinished(b->ib);
}

/* Room enough to poll now. While a backlog drains, wait for half a window
 * (or an empty one) so each request brings a useful page, not one row. */
static bool poll_room(struct bridge *b)
{
	long room = window_room(b);
	if (room <= 0)
		return false;
	if (!b->backlog)
		return true;
	return room >= (window(b) + 1) / 2 || inbox_unfinished(b->ib) == 0;
}

/* A page too large to take is not asked for again as it was: on_poll asks
 * for fewer rows. */
static bool poll_retry(const struct http_resp *r)
{
	return !r->too_large && http_transient(r);
}

static void on_poll(void *ctx, const struct http_resp *r);

static void start_poll(struct bridge *b, int64_t now)
{
	long limit, secs = 0;
	bool cold = inbox_fetch_cursor(b->ib)[0] == '\0';
	if (cold) {
		secs = b->s->since_secs;
		if (b->cold_since) {
			/* Still nothing seen: widen the window by the time spent waiting,
			 * so nothing that arrived since the first replay is missed. */
			secs += (now - b->cold_since) / 1000 + 2;
			if (secs > 2592000)
				secs = 2592000;
		} else {
			b->cold_since = now;
		}
		limit = COLD_LIMIT;
	} else {
		limit = window_room(b);
		if (limit > MAX_LIMIT)
			limit = MAX_LIMIT;
		/* The size of the rows is not known yet: a small first page. */
		if (b->row_bytes == 0 && limit > FIRST_PAGE)
			limit = FIRST_PAGE;
	}
	if (b->page_cap && limit > b->page_cap)
		limit = b->page_cap;
	char *path = platform_activity_path(b->s->workspace_id, cold ? NULL : inbox_fetch_cursor(b->ib), secs, limit);
	struct http_opts o = {
		.method = "GET", .path = path, .max_attempts = 0, .retry = poll_retry,
		.done = on_poll, .ctx = b,
	};
	b->poll_req = http_start(b->h, &o);
	b->poll_limit = limit;
	b->next_poll = now + (int64_t)(b->s->interval * 1000);
	b->cold_since = cold ? b->cold_since : 0;
	b->poll_failures = 0;
	free(path);
}

static void on_poll(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	b->poll_req = NULL;
	int64_t now = now_ms();
	bool cold = inbox_fetch_cursor(b->ib)[0] == '\0';
	if (r->status == 410) {
		log_warn("the platform no longer knows the cursor (HTTP 410, pruned?): replaying the last %ld s", b->s->since_secs);
		inbox_reseed(b->ib);
		b->cold_since = 0;
		b->next_poll = now;
		return;
	}
	if (r->too_large && b->poll_limit > 1) {
		/* More than the bridge takes in one answer: the same page in halves,
		 * until one goes through. */
		b->page_cap = b->poll_limit / 2;
		log_warn("a page of %ld activity rows is larger than 64 MiB: asking for %ld at a time", b->poll_limit,
			 b->page_cap);
		b->next_poll = now;
		return;
	}
	if (r->status < 200 || r->status >= 300) {
		char *why = platform_describe(r);
		if (!b->polled_once && (r->status == 401 || r->status == 403 || r->status == 404)) {
			log_error("reading the activity of workspace %s refused (%s): %s", b->s->workspace_id, why,
				  r->status == 404 ? "check --api-url and, on a multi-tenant platform, --org-id"
						   : "check MOLECULE_WORKSPACE_TOKEN or --token-file");
			free(why);
			b->exit_status = 1;
			b->phase = PH_END;
			return;
		}
		b->poll_failures++;
		log_warn("poll failed (%s)", why);
		free(why);
		b->next_poll = now + backoff_ms(b->poll_failures, 1000, 60000);
		return;
	}
	jv rows = rows_parse(r->body, r->len);
	if (!jv_is_valid(rows)) {
		jv msg = jv_invalid_get_msg(rows);
		log_error("%s", jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "bad activity answer");
		jv_free(msg);
		b->poll_failures++;
		b->next_poll = now + backoff_ms(b->poll_failures, 1000, 60000);
		return;
	}
	b->polled_once = true;
	b->page_cap = 0;
	int n = jv_array_length(jv_copy(rows));
	if (n > 0)
		b->row_bytes = (long)(r->len / (size_t)n);
	rows = rows_oldest_first(rows, cold);
	if (cold) {
		if (n >= b->poll_limit)
			log_warn("more than %ld messages in the replay window: older ones are not replayed", b->poll_limit);
	}
	int queued = inbox_add_rows(b->ib, rows);
	log_debug("poll: %d rows, %d new messages", n, queued);
	b->backlog = !cold && n >= b->poll_limit;
	if (b->backlog) {
		/* A full page: more is waiting. Fetch again as soon as the window has
		 * room for a useful page, not after the poll interval. */
		b->next_poll = now;
	}
	if (!cold && n == 0)
		inbox_caught_up(b->ib);
	if (b->s->once)
		b->once_fetched = true;
	outbox_touch(b->ob);
}

/* ---- handing out ---- */

static void job_start(struct bridge *b, struct message *m, jv shown);

static bool handler_ready(struct bridge *b)
{
	if (inbox_open_count(b->ib) >= window(b))
		return false; /* the window: a replayed backlog is handed out bit by bit too */
	switch (b->mode) {
	case MODE_FILTER:
		return !b->out.broken;
	case MODE_COPROC:
		return b->co.pid > 0 && b->co.to_fd >= 0 && !b->out.broken;
	case MODE_EXEC:
		return b->njobs < b->s->concurrency;
	}
	return false;
}

static void hand_out(struct bridge *b, int64_t now)
{
	struct message *m;
	while (b->phase == PH_RUN && handler_ready(b) && (m = inbox_next_queued(b->ib, now))) {
		if (b->s->max_messages && b->handed_out >= b->s->max_messages)
			break;
		jv outs;
		if (b->filter) {
			outs = jqprog_run(b->filter, jv_copy(m->line));
			if (!jv_is_valid(outs)) {
				jv msg = jv_invalid_get_msg(outs);
				char *why = xasprintf("--filter failed on message %s: %s", m->id,
						      jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "error");
				log_error("%s (kept; tried again later)", why);
				record(b, true, why);
				free(why);
				jv_free(msg);
				int64_t delay = backoff_ms(m->handouts + 1, 1000, 60000);
				m->handouts++;
				inbox_requeue(b->ib, m, now + delay);
				continue;
			}
		} else {
			outs = jv_array_append(jv_array(), jv_copy(m->line));
		}
		b->handed_out++;
		if (jv_array_length(jv_copy(outs)) == 0) {
			/* The filter dropped it: handled, nothing to say. */
			jv_free(outs);
			inbox_open(b->ib, m, now);
			inbox_done(b->ib, m);
			outbox_touch(b->ob);
			continue;
		}
		inbox_open(b->ib, m, now);
		if (b->mode == MODE_EXEC) {
			job_start(b, m, jv_array_get(outs, 0));
			continue;
		}
		jv_array_foreach(outs, i, o)
			outchan_queue_json(&b->out, o);
		jv_free(outs);
	}
}

/* ---- replies ---- */

static void reply_error(struct bridge *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reply_error(struct bridge *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *msg = NULL;
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = NULL;
	va_end(ap);
	log_error("reply line %ld: %s: skipped", b->line_no, msg ? msg : "invalid");
	free(msg);
}

static void answer(struct bridge *b, struct message *m, jv parts)
{
	char *path, *body;
	if (m->source_id) {
		path = xasprintf("/workspaces/%s/a2a", m->source_id);
		body = platform_a2a_body(parts, m->context_id, m->task_id);
	} else {
		path = xasprintf("/workspaces/%s/notify", b->s->workspace_id);
		body = platform_notify_body(parts);
	}
	if (strlen(body) > POST_BODY_MAX) {
		free(body);
		char *why = xasprintf("reply to message %s is larger than the platform's 1 MiB limit", m->id);
		log_error("%s: sending an error reply instead", why);
		record(b, true, why);
		free(why);
		jv err = jv_array_append(jv_array(), parts_text_part("error: the reply was too large to deliver"));
		body = m->source_id ? platform_a2a_body(err, m->context_id, m->task_id) : platform_notify_body(err);
	}
	inbox_answer(b->ib, m, path, body);
	outbox_touch(b->ob);
}

static void handle_reply(struct bridge *b, jv v)
{
	struct reply r;
	char *err = NULL;
	if (reply_parse(v, &r, &err) != 0) {
		reply_error(b, "%s", err);
		free(err);
		return;
	}
	struct message *m;
	if (r.id) {
		m = inbox_find(b->ib, r.id);
		if (!m || m->state == MSG_DONE || m->state == MSG_QUEUED) {
			reply_error(b, "no message with id \"%.60s\" is waiting for a reply", r.id);
			reply_free(&r);
			return;
		}
		if (m->state != MSG_OPEN) {
			reply_error(b, "message %s is already answered", m->id);
			reply_free(&r);
			return;
		}
	} else {
		m = inbox_oldest_open(b->ib);
		if (!m) {
			reply_error(b, "a reply without \"id\" but no message is waiting for one");
			reply_free(&r);
			return;
		}
	}
	int64_t now = now_ms();
	/* A handler that answers is working, however often it is restarted. */
	b->co_failures = 0;
	switch (r.kind) {
	case REPLY_TEXT:
	case REPLY_PARTS:
		record(b, false, NULL);
		answer(b, m, jv_copy(r.parts));
		break;
	case REPLY_ACK:
		record(b, false, NULL);
		inbox_done(b->ib, m);
		outbox_touch(b->ob);
		break;
	case REPLY_ERROR: {
		char *why = xasprintf("handler failed on message %s: %.200s", m->id, r.error);
		record(b, true, why);
		log_warn("%s", why);
		free(why);
		char *text = xasprintf("error: %.*s", ERROR_TEXT_MAX, r.error);
		jv parts = jv_array_append(jv_array(), parts_text_part(text));
		free(text);
		answer(b, m, parts);
		break;
	}
	case REPLY_RETRY:
		inbox_requeue(b->ib, m, now + (int64_t)(b->s->interval * 1000 > 1000 ? b->s->interval * 1000 : 1000));
		outbox_touch(b->ob);
		break;
	}
	reply_free(&r);
}

static void on_line(void *ctx, const char *line, size_t len, bool too_long)
{
	struct bridge *b = ctx;
	b->line_no++;
	if (too_long) {
		reply_error(b, "longer than %u bytes", REPLY_LINE_MAX);
		return;
	}
	if (memchr(line, '\0', len)) {
		/* libjq would take it inside a string; it is never meant. */
		reply_error(b, "contains a NUL byte");
		return;
	}
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len)
		return; /* blank lines are not replies */
	jv v = jv_parse_sized(line, (int)len);
	if (!jv_is_valid(v)) {
		char *why = json_error(v);
		reply_error(b, "not JSON (%s)", why);
		free(why);
		return;
	}
	if (b->reply_filter) {
		jv outs = jqprog_run(b->reply_filter, v);
		if (!jv_is_valid(outs)) {
			jv msg = jv_invalid_get_msg(outs);
			reply_error(b, "--reply-filter failed: %s", jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "error");
			jv_free(msg);
			return;
		}
		jv_array_foreach(outs, k, o)
			handle_reply(b, o);
		jv_free(outs);
		return;
	}
	handle_reply(b, v);
}

static void read_input(struct bridge *b)
{
	char chunk[65536];
	/* An inherited stdin stays blocking (its flags are shared with our parent),
	 * so it is read once per readiness; our own pipes are drained. */
	bool nonblock = b->in_nonblock;
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(b->in_fd, chunk, sizeof chunk);
		if (n > 0) {
			linebuf_feed(&b->lb, chunk, (size_t)n, on_line, b);
			if (!nonblock || (size_t)n < sizeof chunk || b->in_fd < 0)
				return;
			continue;
		}
		if (n < 0 && (errno == EINTR))
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		if (n < 0)
			log_error("reading replies: %s", strerror(errno));
		linebuf_finish(&b->lb, on_line, b);
		b->in_eof = true;
		if (b->mode == MODE_COPROC) {
			/* It closed its output: it cannot answer any more. Its exit,
			 * reaped through SIGCHLD, hands its messages to a new one. */
			proc_close_stdout(&b->co);
			proc_signal(&b->co, SIGTERM);
			return;
		}
		begin_drain(b, "end of input", true);
		return;
	}
}

/* ---- handlers: the co-process and --exec children ---- */

static int coproc_start(struct bridge *b)
{
	char *err = NULL;
	char *env[] = { NULL, NULL };
	env[0] = xasprintf("MOLECULE_WORKSPACE_ID=%s", b->s->workspace_id);
	int rc = proc_start(&b->co, b->s->command, env, true, &err);
	free(env[0]);
	if (rc != 0) {
		log_error("%s", err);
		free(err);
		return -1;
	}
	outchan_close(&b->out);
	outchan_init(&b->out, b->co.to_fd);
	b->in_fd = b->co.from_fd;
	b->in_nonblock = true;
	b->in_eof = false;
	linebuf_free(&b->lb);
	linebuf_init(&b->lb, REPLY_LINE_MAX);
	log_debug("started handler %s (pid %d)", b->s->command[0], (int)b->co.pid);
	return 0;
}

/* The co-process is gone: every message it had not answered goes to the next one. */
static void coproc_exited(struct bridge *b, int status)
{
	int64_t now = now_ms();
	char *how = proc_describe(status);
	b->co.exited = true;
	b->co_last_status = status;
	if (b->co.from_fd >= 0) {
		/* Whatever it printed before dying still counts. */
		char chunk[65536];
		ssize_t n;
		while ((n = read(b->co.from_fd, chunk, sizeof chunk)) > 0)
			linebuf_feed(&b->lb, chunk, (size_t)n, on_line, b);
		linebuf_finish(&b->lb, on_line, b);
	}
	proc_close_stdin(&b->co);
	proc_close_stdout(&b->co);
	outchan_close(&b->out);
	b->in_fd = -1;
	b->in_eof = true;
	/* Failing means dying early without having answered anything. */
	bool quick = now - b->co.started_at < STABLE_CHILD_MS;
	b->co.pid = 0;
	int requeued = inbox_requeue_open(b->ib);
	if (b->phase != PH_RUN && b->phase != PH_REGISTER) {
		log_info("handler ended (%s)", how);
		free(how);
		b->posts_only = true;
		return;
	}
	b->co_failures = quick ? b->co_failures + 1 : 1;
	if (b->co_failures > b->s->restart_limit) {
		log_error("handler %s keeps failing (%s, %d times in a row): giving up", b->s->command[0], how, b->co_failures);
		free(how);
		b->exit_status = WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1;
		b->phase = PH_END;
		return;
	}
	int64_t delay = backoff_ms(b->co_failures, 200, 10000);
	log_warn("handler %s ended (%s); %d unanswered messages go to its restart in %lld ms",
		 b->s->command[0], how, requeued, (long long)delay);
	free(how);
	b->co_restart_at = now + delay;
}

static void on_line(void *ctx, const char *line, size_t len, bool too_long);

static void job_free(struct job *j)
{
	proc_close_stdin(&j->p);
	proc_close_stdout(&j->p);
	buf_free(&j->input);
	buf_free(&j->output);
	free(j);
}

static void job_start(struct bridge *b, struct message *m, jv shown)
{
	struct job *j = xcalloc(1, sizeof *j);
	memcpy(j->msg_id, m->id, sizeof j->msg_id);
	if (b->s->exec_input == EXEC_INPUT_JSON) {
		json_write(&j->input, shown);
		buf_append(&j->input, "\n", 1);
	} else {
		jv t = json_field(m->line, "text");
		if (jv_get_kind(t) == JV_KIND_STRING)
			buf_append(&j->input, jv_string_value(t), (size_t)jv_string_length_bytes(jv_copy(t)));
		jv_free(t);
		jv_free(shown);
	}
	jv method = json_field(m->line, "method");
	char *env[] = {
		xasprintf("MOLECULE_WORKSPACE_ID=%s", b->s->workspace_id),
		xasprintf("MOLECULE_CALLER_ID=%s", m->source_id ? m->source_id : ""),
		xasprintf("MOLECULE_MESSAGE_ID=%s", m->id),
		xasprintf("MOLECULE_TASK_ID=%s", m->task_id ? m->task_id : ""),
		xasprintf("MOLECULE_CONTEXT_ID=%s", m->context_id ? m->context_id : ""),
		xasprintf("MOLECULE_METHOD=%s", jv_get_kind(method) == JV_KIND_STRING ? jv_string_value(method) : ""),
		NULL,
	};
	jv_free(method);
	char *argv[] = { "/bin/sh", "-c", b->s->exec, NULL };
	char *err = NULL;
	int rc = proc_start(&j->p, argv, env, true, &err);
	for (char **e = env; *e; e++)
		free(*e);
	if (rc != 0) {
		/* Cannot even start: the message stays, to be tried again later. */
		log_error("--exec: %s", err);
		free(err);
		inbox_requeue(b->ib, m, now_ms() + backoff_ms(m->handouts, 1000, 60000));
		job_free(j);
		return;
	}
	if (j->input.len == 0)
		proc_close_stdin(&j->p);
	j->deadline = now_ms() + (int64_t)(b->s->exec_timeout * 1000);
	j->next = b->jobs;
	b->jobs = j;
	b->njobs++;
}

static void job_write(struct job *j)
{
	while (j->p.to_fd >= 0 && j->input_off < j->input.len) {
		ssize_t w = write(j->p.to_fd, j->input.p + j->input_off, j->input.len - j->input_off);
		if (w > 0)
			j->input_off += (size_t)w;
		else if (w < 0 && errno == EINTR)
			continue;
		else if (w < 0 && errno == EAGAIN)
			return;
		else
			break; /* it stopped reading: that is its business */
	}
	proc_close_stdin(&j->p);
}

static void job_read(struct job *j)
{
	char chunk[65536];
	for (;;) {
		ssize_t n = read(j->p.from_fd, chunk, sizeof chunk);
		if (n > 0) {
			if (j->output.len + (size_t)n > EXEC_OUTPUT_MAX) {
				j->too_much = true;
				proc_close_stdout(&j->p);
				proc_signal(&j->p, SIGKILL);
				return;
			}
			buf_append(&j->output, chunk, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		proc_close_stdout(&j->p);
		return;
	}
}

/* A child is finished once it has exited and its output is read to the end. */
static void job_settle(struct bridge *b, struct job *j)
{
	jv v = jv_object_set(jv_object(), jv_string("id"), jv_string(j->msg_id));
	int st = j->p.status;
	if (j->timed_out) {
		v = jv_object_set(v, jv_string("error"), jv_string_fmt("timed out after %g s", b->s->exec_timeout));
	} else if (j->too_much) {
		v = jv_object_set(v, jv_string("error"), jv_string("printed more than 1 MiB"));
	} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		char *how = proc_describe(st);
		v = jv_object_set(v, jv_string("error"), jv_string(how));
		free(how);
	} else {
		size_t n = j->output.len;
		while (n > 0 && (j->output.p[n - 1] == '\n' || j->output.p[n - 1] == '\r'))
			n--;
		/* Empty output is "nothing to say", not an empty reply. */
		if (n > 0) {
			jv text = jv_string_sized(j->output.p, (int)n);
			v = jv_object_set(v, jv_string("text"), text);
		}
	}
	handle_reply(b, v);
}

static void jobs_tick(struct bridge *b, int64_t now)
{
	for (struct job **pp = &b->jobs; *pp;) {
		struct job *j = *pp;
		if (!j->p.exited && !j->timed_out && now >= j->deadline) {
			/* The whole group: a shell's children go too. */
			j->timed_out = true;
			log_warn("--exec child for message %s timed out after %g s: killed", j->msg_id, b->s->exec_timeout);
			proc_signal(&j->p, SIGKILL);
		}
		if (j->p.exited && (j->p.from_fd < 0 || j->timed_out)) {
			*pp = j->next;
			b->njobs--;
			job_settle(b, j);
			job_free(j);
			continue;
		}
		pp = &j->next;
	}
}

static void reap_children(struct bridge *b)
{
	int status;
	pid_t pid;
	while ((pid = proc_reap(&status)) > 0) {
		if (b->mode == MODE_COPROC && pid == b->co.pid) {
			coproc_exited(b, status);
			continue;
		}
		for (struct job *j = b->jobs; j; j = j->next)
			if (j->p.pid == pid) {
				j->p.exited = true;
				j->p.status = status;
				if (j->p.from_fd >= 0)
					job_read(j);
				break;
			}
	}
}

/* Shutdown: the co-process gets end of input once its last message is written;
 * after the drain, whatever still runs gets SIGTERM, then SIGKILL. */
static void stop_children(struct bridge *b)
{
	int64_t until = now_ms() + KILL_GRACE_MS;
	if (b->mode == MODE_COPROC && b->co.pid > 0) {
		proc_close_stdin(&b->co);
		proc_signal(&b->co, SIGTERM);
	}
	for (struct job *j = b->jobs; j; j = j->next)
		proc_signal(&j->p, SIGTERM);
	for (;;) {
		int status;
		pid_t pid;
		while ((pid = proc_reap(&status)) > 0) {
			if (pid == b->co.pid)
				b->co.pid = 0;
			for (struct job *j = b->jobs; j; j = j->next)
				if (j->p.pid == pid)
					j->p.exited = true;
		}
		bool alive = b->mode == MODE_COPROC && b->co.pid > 0;
		for (struct job *j = b->jobs; j; j = j->next)
			alive |= !j->p.exited;
		if (!alive)
			break;
		if (now_ms() >= until) {
			if (b->co.pid > 0)
				proc_signal(&b->co, SIGKILL);
			for (struct job *j = b->jobs; j; j = j->next)
				proc_signal(&j->p, SIGKILL);
			until = now_ms() + KILL_GRACE_MS;
		}
		struct timespec ts = { 0, 20 * 1000000L };
		nanosleep(&ts, NULL);
	}
	while (b->jobs) {
		struct job *j = b->jobs;
		b->jobs = j->next;
		job_free(j);
	}
}

/* ---- the loop ---- */

/* --once: everything the one poll brought is done. --max-messages: that many
 * were handed out and all of them are done. Kept replies are posted either way. */
static bool work_complete(struct bridge *b)
{
	if (outbox_unposted(b->ob) > 0)
		return false;
	if (b->s->once && b->once_fetched && !b->poll_req && inbox_unfinished(b->ib) == 0)
		return true;
	return b->s->max_messages && b->handed_out >= b->s->max_messages && inbox_open_count(b->ib) == 0;
}

/* Ready events of one descriptor, without waiting. */
static short fd_events(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };
	if (poll(&p, 1, 0) <= 0)
		return 0;
	return p.revents;
}

static void on_settled(void *ctx, const char *msg_id, bool ok, const char *why)
{
	struct bridge *b = ctx;
	if (!ok) {
		char *s = xasprintf("reply to %s not delivered: %s", msg_id, why ? why : "refused");
		record(b, true, s);
		free(s);
	}
}

static void handle_signals(struct bridge *b)
{
	struct signalfd_siginfo si;
	while (read(b->sig_fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGCHLD) {
			reap_children(b);
			continue;
		}
		if (si.ssi_signo == SIGINT || si.ssi_signo == SIGTERM || si.ssi_signo == SIGHUP) {
			b->signals++;
			if (b->signals > 1) {
				log_warn("second signal: stopping without waiting for replies");
				b->phase = PH_END;
			} else {
				log_info("%s: finishing open work (up to %.0f s)", strsignal((int)si.ssi_signo), b->s->drain_timeout);
				begin_drain(b, "signal", false);
			}
		}
	}
}

static int64_t min_wait(int64_t a, int64_t b) { return a < 0 ? b : (b < 0 ? a : (a < b ? a : b)); }

static int setup(struct bridge *b, struct settings *s)
{
	memset(b, 0, sizeof *b);
	b->s = s;
	b->lock_fd = -1;
	b->sig_fd = -1;
	b->st = jv_null();
	char *err = NULL;
	b->lock_fd = state_lock(s->state_dir, s->workspace_id, &err);
	if (b->lock_fd < 0) {
		log_error("%s", err);
		free(err);
		return 1;
	}
	int rc = state_load(s->state_dir, s->workspace_id, &b->st, &err);
	if (rc < 0) {
		log_error("%s", err);
		free(err);
		return 1;
	}
	if (!s->token) {
		s->token = json_string_dup(b->st, "auth_token");
		if (s->token) {
			free(s->token_source);
			s->token_source = xstrdup("state");
			log_add_secret(s->token);
		}
	}
	if (s->filter) {
		b->filter = jqprog_compile(s->filter, &err);
		if (!b->filter) {
			log_error("--filter: %s", err);
			free(err);
			return 2;
		}
	}
	if (s->reply_filter) {
		b->reply_filter = jqprog_compile(s->reply_filter, &err);
		if (!b->reply_filter) {
			log_error("--reply-filter: %s", err);
			free(err);
			return 2;
		}
	}
	b->ib = inbox_new(s->workspace_id, b->st);
	b->h = http_new(s->api_url, s->workspace_id, s->org_id);
	http_set_token(b->h, s->token);
	b->ob = outbox_new(b->ib, b->h, on_settled, b);
	linebuf_init(&b->lb, REPLY_LINE_MAX);
	b->mode = s->command ? MODE_COPROC : s->exec ? MODE_EXEC : MODE_FILTER;
	b->in_fd = -1;
	b->in_eof = true;
	b->out.fd = -1;
	if (b->mode == MODE_FILTER) {
		outchan_init(&b->out, STDOUT_FILENO);
		b->in_fd = STDIN_FILENO;
		/* An inherited stdin stays blocking (its flags are shared with our parent). */
		b->in_nonblock = (fcntl(STDIN_FILENO, F_GETFL) & O_NONBLOCK) != 0;
		b->in_eof = false;
		/* Closed at start-up: a clean stop, no message handed out. */
		if (s->stdout_closed)
			b->out.broken = true;
	}

	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	b->sig_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (b->sig_fd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return 1;
	}
	b->started = now_ms();
	srand((unsigned)(time(NULL) ^ getpid()));
	if (b->mode == MODE_COPROC && coproc_start(b) != 0)
		return 127;
	return -1;
}

static void teardown(struct bridge *b)
{
	stop_children(b);
	if (b->h)
		save_state(b, true);
	outbox_free(b->ob);
	http_free(b->h);
	inbox_free(b->ib);
	jqprog_free(b->filter);
	jqprog_free(b->reply_filter);
	outchan_close(&b->out);
	linebuf_free(&b->lb);
	jv_free(b->st);
	free(b->sample_error);
	if (b->sig_fd >= 0)
		close(b->sig_fd);
	if (b->lock_fd >= 0)
		close(b->lock_fd);
}

static void coproc_tick(struct bridge *b, int64_t now)
{
	if (b->mode != MODE_COPROC)
		return;
	if ((b->phase == PH_RUN || b->phase == PH_REGISTER) && b->co.pid == 0 && b->co_restart_at &&
	    now >= b->co_restart_at) {
		b->co_restart_at = 0;
		if (coproc_start(b) != 0) {
			b->co_failures++;
			if (b->co_failures > b->s->restart_limit) {
				log_error("handler %s cannot be started again: giving up", b->s->command[0]);
				b->exit_status = 127;
				b->phase = PH_END;
				return;
			}
			b->co_restart_at = now + backoff_ms(b->co_failures, 200, 10000);
		}
	}
	/* Draining: once its last message is written, end of input tells it to finish. */
	if (b->phase == PH_DRAIN && b->co.pid > 0 && b->co.to_fd >= 0 && !outchan_want_write(&b->out)) {
		outchan_close(&b->out);
		proc_close_stdin(&b->co);
	}
}

int loop_run(struct settings *s)
{
	struct bridge b;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc = setup(&b, s);
	if (rc >= 0) {
		teardown(&b);
		curl_global_cleanup();
		return rc;
	}
	b.phase = PH_REGISTER;
	start_register(&b);

	struct curl_waitfd *fds = NULL;
	size_t capfds = 0;
	while (b.phase != PH_END) {
		int64_t now = now_ms();
		coproc_tick(&b, now);
		jobs_tick(&b, now);
		if (b.phase == PH_RUN) {
			if (now >= b.next_heartbeat)
				start_heartbeat(&b);
			if (!b.poll_req && now >= b.next_poll && want_more(&b) && poll_room(&b))
				start_poll(&b, now);
			hand_out(&b, now);
			if (work_complete(&b))
				b.phase = PH_END;
		}
		if (b.phase == PH_DRAIN) {
			if (now >= b.next_heartbeat)
				start_heartbeat(&b);
			if (drained(&b) || now >= b.drain_deadline) {
				if (!drained(&b))
					log_warn("drain timeout: %d messages unanswered, %d replies unposted; they are kept for the next run",
						 inbox_open_count(b.ib), outbox_unposted(b.ob));
				b.phase = PH_END;
			}
		}
		if (b.phase == PH_END)
			break;
		outbox_pump(b.ob);
		if (outchan_want_write(&b.out) && b.out.nonblock)
			outchan_flush(&b.out);
		if (b.mode == MODE_FILTER && b.out.broken && !b.posts_only) {
			log_info("output closed: stopping");
			begin_drain(&b, "output closed", true);
		}
		unsigned long finished = http_completed(b.h);
		http_process(b.h, now);
		if (b.phase == PH_END)
			break;
		/* After the requests went out: the platform works while we write. */
		save_state(&b, false);

		/* How long to sleep: the nearest timer. */
		now = now_ms();
		int64_t wait = 60000;
		if (b.phase == PH_RUN) {
			wait = min_wait(wait, b.next_heartbeat - now);
			if (!b.poll_req && want_more(&b) && poll_room(&b))
				wait = min_wait(wait, b.next_poll - now);
			if (handler_ready(&b))
				wait = min_wait(wait, inbox_next_due(b.ib, now));
		} else if (b.phase == PH_DRAIN) {
			wait = min_wait(wait, b.drain_deadline - now);
			wait = min_wait(wait, b.next_heartbeat - now);
		}
		if (b.co_restart_at && b.phase != PH_DRAIN)
			wait = min_wait(wait, b.co_restart_at - now);
		for (struct job *j = b.jobs; j; j = j->next)
			if (!j->timed_out)
				wait = min_wait(wait, j->deadline - now);
		wait = min_wait(wait, http_next_due(b.h, now));
		int64_t due = save_due(&b, now);
		if (due >= 0)
			wait = min_wait(wait, due > now ? due - now : 0);
		/* Answers that just came in may have made work: look again at once. */
		if (wait < 0 || http_completed(b.h) != finished)
			wait = 0;

		size_t need = 3 + 2 * (size_t)b.njobs;
		if (need > capfds) {
			capfds = need * 2;
			fds = xrealloc(fds, capfds * sizeof *fds);
		}
		unsigned nfds = 0;
		fds[nfds++] = (struct curl_waitfd){ .fd = b.sig_fd, .events = CURL_WAIT_POLLIN };
		/* Replies are read once registered: a refused token is reported even
		 * when input ends at once. */
		bool watch_in = !b.in_eof && b.in_fd >= 0 && b.phase != PH_REGISTER;
		/* Stdout is watched even with nothing to write, so a reader that went
		 * away (| head -n 1) is noticed while its lines sit in the pipe. */
		bool watch_out = b.out.fd >= 0 && !b.out.broken &&
				 (outchan_want_write(&b.out) || (b.mode == MODE_FILTER && !b.posts_only));
		unsigned in_i = nfds;
		if (watch_in)
			fds[nfds++] = (struct curl_waitfd){ .fd = b.in_fd, .events = CURL_WAIT_POLLIN };
		if (watch_out)
			fds[nfds++] = (struct curl_waitfd){ .fd = b.out.fd,
				.events = outchan_want_write(&b.out) ? CURL_WAIT_POLLOUT : 0 };
		for (struct job *j = b.jobs; j; j = j->next) {
			if (j->p.to_fd >= 0)
				fds[nfds++] = (struct curl_waitfd){ .fd = j->p.to_fd, .events = CURL_WAIT_POLLOUT };
			if (j->p.from_fd >= 0)
				fds[nfds++] = (struct curl_waitfd){ .fd = j->p.from_fd, .events = CURL_WAIT_POLLIN };
		}
		int numfds = 0;
		CURLMcode mc = curl_multi_poll(http_multi(b.h), fds, nfds, (int)(wait > INT32_MAX ? INT32_MAX : wait), &numfds);
		if (mc != CURLM_OK) {
			log_error("libcurl: %s", curl_multi_strerror(mc));
			b.exit_status = 1;
			break;
		}
		/* Timed out: nothing is ready. */
		if (numfds == 0)
			continue;
		if (fds[0].revents)
			handle_signals(&b);
		/* curl_multi_poll reports only POLLIN/POLLOUT/POLLPRI for our
		 * descriptors, so hang-ups and errors are asked of poll(2) itself
		 * when it did not say "readable". */
		if (watch_in && b.in_fd >= 0 &&
		    ((fds[in_i].revents & CURL_WAIT_POLLIN) || fd_events(b.in_fd, POLLIN)))
			read_input(&b);
		if (watch_out && b.out.fd >= 0) {
			/* (libcurl may report an error as readable and writable.) */
			short ev = fd_events(b.out.fd, outchan_want_write(&b.out) ? POLLOUT : 0);
			if (ev & (POLLERR | POLLHUP | POLLNVAL))
				b.out.broken = true; /* the reader is gone */
			else if (ev & POLLOUT)
				outchan_flush(&b.out);
		}
		for (struct job *j = b.jobs; j; j = j->next) {
			if (j->p.to_fd >= 0 && fd_events(j->p.to_fd, POLLOUT))
				job_write(j);
			if (j->p.from_fd >= 0 && fd_events(j->p.from_fd, POLLIN))
				job_read(j);
		}
	}
	free(fds);
	int status = b.exit_status;
	teardown(&b);
	curl_global_cleanup();
	return status;
}
