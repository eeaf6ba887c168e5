/* outbox.c: posting replies and new messages: per-destination order, destinations in parallel, retries, stalls, the outbox bound. */
#include <stdlib.h>
#include <string.h>
#include "outbox.h"
#include "log.h"
#include "platform.h"
#include "util.h"

/* One destination in a pass: a peer, or the canvas (key NULL). */
struct dest {
	const char *key;
	bool blocked;             /* an earlier unfinished message of it holds its replies back */
	bool out_blocked;         /* an earlier new message to it is not posted yet */
	uint64_t first_reply;     /* smallest reply_seq of its unposted replies (0: none) */
	uint64_t active_out;      /* reply_seq of its first new message, when that one may go (0: none) */
	int waiting;              /* unposted replies and new messages to it */
	int postable;             /* of those, the ones that may go in this run */
};

/* A destination whose posts keep failing, reported now and again while it lasts. */
struct stall {
	char *key;                /* NULL: the canvas */
	int64_t since, warned;    /* the first failure; the last report (the first: the client's own line) */
	int failures;
	bool reported;
	char *why;
};

struct outbox {
	struct inbox *ib;
	struct http *h;
	posted_fn fn;
	void *ctx;
	bool changed;
	long post_timeout_ms;
	int64_t stall_warn_ms;
	bool canvas_off;          /* the owner turned canvas replies off (403 talk_to_user_disabled) */
	struct post_ctx *posts;   /* in flight: the outbox's until settled or freed */
	struct dest *dests;       /* this pass's destinations */
	size_t ndests, capdests;
	struct stall *stalls;
	size_t nstalls, capstalls;
	int waiting;              /* as of the last pass: replies and new messages unposted, */
	int held;                 /* messages done behind an unfinished one, */
	size_t waiting_bytes;     /* and the bytes of the unposted bodies */
	int prompt;               /* of those, what waits behind a post going through promptly */
};

struct post_ctx {
	struct post_ctx *next, *prev;
	struct outbox *ob;
	struct message *m;
	struct http_req *req;
	char *key;                /* its destination (a copy: NULL for the canvas) */
	int64_t started;          /* now_ms() when it was started */
	bool retried;             /* an attempt failed */
	int behind;               /* what may go to its destination, counted by the last pass (0: not counted) */
};

static bool same_key(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* "peer <id>" or "the canvas", for log lines. */
static char *dest_name(const char *key)
{
	return key ? xasprintf("peer %s", key) : xstrdup("the canvas");
}

static void post_unlink(struct outbox *ob, struct post_ctx *pc)
{
	if (pc->prev)
		pc->prev->next = pc->next;
	else
		ob->posts = pc->next;
	if (pc->next)
		pc->next->prev = pc->prev;
}

struct outbox *outbox_new(struct inbox *ib, struct http *h, posted_fn fn, void *ctx)
{
	struct outbox *ob = xcalloc(1, sizeof *ob);
	ob->ib = ib;
	ob->h = h;
	ob->fn = fn;
	ob->ctx = ctx;
	ob->changed = true;
	ob->stall_warn_ms = OUTBOX_STALL_WARN_MS;
	return ob;
}

void outbox_set_timing(struct outbox *ob, long post_timeout_ms, int64_t stall_warn_ms)
{
	ob->post_timeout_ms = post_timeout_ms;
	ob->stall_warn_ms = stall_warn_ms > 0 ? stall_warn_ms : OUTBOX_STALL_WARN_MS;
}

static void stall_free(struct stall *st)
{
	free(st->key);
	free(st->why);
}

void outbox_free(struct outbox *ob)
{
	if (!ob)
		return;
	/* Posts still in flight (a drain that timed out) are kept in the state
	 * file already; their requests go with the outbox. */
	while (ob->posts) {
		struct post_ctx *pc = ob->posts;
		post_unlink(ob, pc);
		http_cancel(ob->h, pc->req);
		free(pc->key);
		free(pc);
	}
	for (size_t i = 0; i < ob->nstalls; i++)
		stall_free(&ob->stalls[i]);
	free(ob->stalls);
	free(ob->dests);
	free(ob);
}

void outbox_touch(struct outbox *ob) { ob->changed = true; }
bool outbox_full(const struct outbox *ob)
{
	return ob->waiting + ob->held >= OUTBOX_MAX_MESSAGES || ob->waiting_bytes >= (size_t)OUTBOX_MAX_BYTES;
}

/* A kept reply whose row has not come back, before the fetch caught up: where
 * its message sits is not known yet, so it cannot go. */
static bool kept_waiting(const struct outbox *ob, const struct message *m)
{
	return m->orphan && !m->outbound && m->state == MSG_ANSWERED && !inbox_kept_released(ob->ib);
}

/* A reply or new message read and not posted. */
static bool unposted(const struct message *m)
{
	return (m->state == MSG_ANSWERED || m->state == MSG_POSTING) && m->post_body;
}

int outbox_unposted(const struct outbox *ob)
{
	int n = 0;
	for (struct message *m = inbox_first(ob->ib); m; m = inbox_next(ob->ib, m))
		if (unposted(m) && !kept_waiting(ob, m))
			n++;
	return n;
}

/* ---- destinations whose posts fail ------------------------------------- */

static struct stall *stall_find(struct outbox *ob, const char *key)
{
	for (size_t i = 0; i < ob->nstalls; i++)
		if (same_key(ob->stalls[i].key, key))
			return &ob->stalls[i];
	return NULL;
}

static int waiting_for(struct outbox *ob, const char *key)
{
	int n = 0;
	for (struct message *m = inbox_first(ob->ib); m; m = inbox_next(ob->ib, m))
		if (unposted(m) && same_key(m->source_id, key))
			n++;
	return n;
}

static void stall_warn(struct outbox *ob, struct stall *st, int64_t now)
{
	char *name = dest_name(st->key);
	log_warn("posts to %s are not getting through (%s; %d attempts in %lld s): %d waiting to be posted", name,
		 st->why ? st->why : "failed", st->failures, (long long)((now - st->since) / 1000),
		 waiting_for(ob, st->key));
	free(name);
	st->warned = now;
	st->reported = true;
}

/* An attempt to post to key failed and will be retried. */
static void stall_note(struct outbox *ob, const char *key, const struct http_resp *r)
{
	int64_t now = now_ms();
	struct stall *st = stall_find(ob, key);
	if (!st) {
		if (ob->nstalls == ob->capstalls) {
			ob->capstalls = ob->capstalls ? ob->capstalls * 2 : 4;
			ob->stalls = xrealloc(ob->stalls, ob->capstalls * sizeof *ob->stalls);
		}
		st = &ob->stalls[ob->nstalls++];
		/* The client says so at the first failure: this repeats it. */
		*st = (struct stall){ .key = key ? xstrdup(key) : NULL, .since = now, .warned = now };
	}
	st->failures++;
	free(st->why);
	st->why = platform_describe(r);
}

/* A post to key settled: whatever failed before is over. */
static void stall_end(struct outbox *ob, const char *key)
{
	struct stall *st = stall_find(ob, key);
	if (!st)
		return;
	if (st->reported) {
		char *name = dest_name(key);
		log_info("posts to %s get through again after %d failed attempts", name, st->failures);
		free(name);
	}
	stall_free(st);
	*st = ob->stalls[--ob->nstalls];
}

static void stalls_report(struct outbox *ob)
{
	if (!ob->nstalls)
		return;
	int64_t now = now_ms();
	for (size_t i = 0; i < ob->nstalls; i++)
		if (now - ob->stalls[i].warned >= ob->stall_warn_ms)
			stall_warn(ob, &ob->stalls[i], now);
}

/* ---- posting ------------------------------------------------------------ */

/* Worth another attempt: the network, overload, rate limits, a proxy's page,
 * and a token the platform may accept again (the session re-registers). */
static bool post_retry(const struct http_resp *r)
{
	enum post_verdict v = platform_post_verdict(r);
	return v == POST_RETRY || v == POST_UNAUTHORIZED;
}

/* "reply to message <row id>" or "message <id> to <destination>", for log lines. */
static char *post_name(const struct message *m)
{
	if (!m->outbound)
		return xasprintf("reply to message %s", m->id);
	char *name = dest_name(m->source_id);
	char *out = xasprintf("message %s to %s", m->id, name);
	free(name);
	return out;
}

/* -v: one line for each attempt that failed and for the post that settled. */
static void log_attempt(const struct post_ctx *pc, const char *what, const struct http_resp *r)
{
	if (!log_enabled(LV_DEBUG))
		return;
	char *name = post_name(pc->m);
	char *why = platform_describe(r);
	log_debug("%s: %s: %s, %lld ms, attempt %d", what, name, why, (long long)(now_ms() - pc->started), r->attempts);
	free(why);
	free(name);
}

static void post_failed(void *ctx, const struct http_resp *r)
{
	struct post_ctx *pc = ctx;
	pc->retried = true;
	log_attempt(pc, "post failed, trying again", r);
	stall_note(pc->ob, pc->m->source_id, r);
}

/* A refusal for good: said once per post, but once for as long as the owner
 * keeps canvas replies turned off. */
static void report_refusal(struct outbox *ob, const struct message *m, enum post_verdict v, const char *why)
{
	char *name = post_name(m);
	if (v == POST_CANVAS_OFF && ob->canvas_off)
		log_debug("%s dropped: canvas replies are still turned off", name);
	else if (v == POST_CANVAS_OFF)
		log_error("%s refused (%s): the workspace's owner turned replies to the canvas off; "
			  "they are dropped until they are turned on again", name, why);
	else
		log_error("%s refused for good (%s): dropped", name, why);
	free(name);
	if (v == POST_CANVAS_OFF)
		ob->canvas_off = true;
}

static void on_posted(void *ctx, const struct http_resp *r)
{
	struct post_ctx *pc = ctx;
	struct outbox *ob = pc->ob;
	struct message *m = pc->m;
	enum post_verdict v = platform_post_verdict(r);
	bool ok = v == POST_DELIVERED;
	log_attempt(pc, ok ? "posted" : "post refused", r);
	post_unlink(ob, pc);
	free(pc->key);
	free(pc);
	ob->changed = true;
	char *why = ok ? NULL : platform_describe(r);
	char id[UUID_LEN + 1];
	memcpy(id, m->id, sizeof id);
	stall_end(ob, m->source_id);
	if (!ok) {
		report_refusal(ob, m, v, why);
	} else if (!m->source_id && ob->canvas_off) {
		log_info("replies to the canvas are accepted again");
		ob->canvas_off = false;
	}
	if (m->orphan)
		inbox_orphan_done(ob->ib, m);
	else if (!ok)
		inbox_failed(ob->ib, m);
	else
		inbox_done(ob->ib, m);
	if (ob->fn)
		ob->fn(ob->ctx, id, ok, why);
	free(why);
}

static void start_post(struct outbox *ob, struct message *m)
{
	struct post_ctx *pc = xcalloc(1, sizeof *pc);
	pc->key = m->source_id ? xstrdup(m->source_id) : NULL;
	pc->ob = ob;
	pc->m = m;
	pc->next = ob->posts;
	if (ob->posts)
		ob->posts->prev = pc;
	ob->posts = pc;
	m->state = MSG_POSTING;
	pc->started = now_ms();
	struct http_opts o = {
		.method = "POST",
		.path = m->post_path,
		.body = m->post_body,
		.body_len = strlen(m->post_body),
		.as_workspace = strstr(m->post_path, "/a2a") != NULL,
		.max_attempts = 0,
		.retry = post_retry,
		.timeout_ms = ob->post_timeout_ms,
		.failed = post_failed,
		.done = on_posted,
		.ctx = pc,
	};
	pc->req = http_start(ob->h, &o);
}

struct message *outbox_new_message(struct outbox *ob, const char *own_id, const char *to, jv parts,
				   const char *context_id, char **err)
{
	*err = NULL;
	if (to && strcmp(to, own_id) == 0) {
		jv_free(parts);
		*err = xstrdup("\"to\" is this workspace's own id: it would come back as a new message");
		return NULL;
	}
	char id[UUID_LEN + 1];
	uuid_new(id);
	char *path = to ? xasprintf("/workspaces/%s/a2a", to) : xasprintf("/workspaces/%s/notify", own_id);
	char *body = to ? platform_a2a_body(parts, context_id, NULL, id) : platform_notify_body(parts);
	if (strlen(body) > PLATFORM_POST_MAX) {
		free(path);
		free(body);
		*err = xasprintf("a new message to %s is larger than the platform's 1 MiB limit: not sent",
				 to ? to : "the canvas");
		return NULL;
	}
	ob->changed = true;
	return inbox_add_outbound(ob->ib, id, to, path, body);
}

/* ---- the order ---------------------------------------------------------- */


static struct dest *dest_of(struct outbox *ob, const char *key)
{
	for (size_t i = 0; i < ob->ndests; i++)
		if (same_key(ob->dests[i].key, key))
			return &ob->dests[i];
	if (ob->ndests == ob->capdests) {
		ob->capdests = ob->capdests ? ob->capdests * 2 : 16;
		ob->dests = xrealloc(ob->dests, ob->capdests * sizeof *ob->dests);
	}
	struct dest *d = &ob->dests[ob->ndests++];
	*d = (struct dest){ .key = key };
	return d;
}

/* A post in flight that has not taken long nor failed. */
static bool prompt(const struct post_ctx *pc, int64_t now)
{
	return !pc->retried && now - pc->started < OUTBOX_PROMPT_MS;
}

int outbox_prompt_waiting(struct outbox *ob, int64_t now, int64_t *recheck_at)
{
	/* As counted by the last pass (a post settled since still counts until the
	 * next one), less what waits behind a post that has since turned slow. */
	int n = ob->prompt;
	*recheck_at = 0;
	for (struct post_ctx *pc = ob->posts; pc; pc = pc->next) {
		if (!pc->behind)
			continue;
		if (!prompt(pc, now)) {
			n -= pc->behind;
		} else if (!*recheck_at || pc->started + OUTBOX_PROMPT_MS < *recheck_at) {
			*recheck_at = pc->started + OUTBOX_PROMPT_MS;
		}
	}
	return n > 0 ? n : 0;
}

/* After a pass: what waits behind each destination's post, where it goes through promptly. */
static void count_prompt(struct outbox *ob)
{
	int64_t now = now_ms();
	ob->prompt = 0;
	for (struct post_ctx *pc = ob->posts; pc; pc = pc->next) {
		pc->behind = 0;
		bool seen = false;
		for (struct post_ctx *q = ob->posts; q != pc && !seen; q = q->next)
			seen = same_key(q->key, pc->key);
		if (!seen && prompt(pc, now)) {
			pc->behind = dest_of(ob, pc->key)->postable;
			ob->prompt += pc->behind;
		}
	}
}

/* What waits, per destination and in all: the first reply not posted yet, the
 * bound's counts. */
static void survey(struct outbox *ob)
{
	ob->ndests = 0;
	ob->waiting = ob->held = 0;
	ob->waiting_bytes = 0;
	for (struct message *m = inbox_first(ob->ib); m; m = inbox_next(ob->ib, m)) {
		if (m->state == MSG_DONE) {
			ob->held++;
			continue;
		}
		if (!unposted(m))
			continue;
		struct dest *d = dest_of(ob, m->source_id);
		d->waiting++;
		if (!kept_waiting(ob, m))
			d->postable++;
		ob->waiting++;
		ob->waiting_bytes += strlen(m->post_body);
		if (!m->outbound && (!d->first_reply || m->reply_seq < d->first_reply))
			d->first_reply = m->reply_seq;
	}
}

/* A new message goes after the replies to the same place read before it, and
 * one at a time; while it may go, replies read after it wait for it. */
static void visit_outbound(struct outbox *ob, struct message *m)
{
	struct dest *d = dest_of(ob, m->source_id);
	bool go = !d->out_blocked && (!d->first_reply || d->first_reply > m->reply_seq);
	d->out_blocked = true;
	if (!go)
		return;
	d->active_out = m->reply_seq;
	if (m->state == MSG_ANSWERED)
		start_post(ob, m);
}

/* One message in posting order: one that is not done holds back every later
 * reply to the same peer (the canvas counts as one peer), so each peer sees
 * replies in the order its messages arrived, while different peers proceed
 * in parallel. */
static void visit(struct outbox *ob, struct message *m)
{
	if (m->state == MSG_DONE || kept_waiting(ob, m))
		return;
	struct dest *d = dest_of(ob, m->source_id);
	bool held = d->blocked || (d->active_out && d->active_out < m->reply_seq);
	if (!held && m->state == MSG_ANSWERED && m->post_body)
		start_post(ob, m);
	d->blocked = true;
}

bool outbox_pump(struct outbox *ob)
{
	stalls_report(ob);
	if (!ob->changed)
		return false;
	ob->changed = false;
	inbox_adopt_kept(ob->ib);
	survey(ob);
	/* New messages first: which may go decides which replies wait for them. */
	for (struct message *m = inbox_first(ob->ib); m && m->orphan; m = inbox_next(ob->ib, m))
		if (m->outbound)
			visit_outbound(ob, m);
	for (struct message *m = inbox_first(ob->ib); m; m = inbox_next(ob->ib, m))
		if (!m->outbound)
			visit(ob, m);
	count_prompt(ob);
	return true;
}
