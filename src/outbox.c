/* outbox.c: reply posting: per-peer order, parallel peers, retries. */
#include <stdlib.h>
#include <string.h>
#include "outbox.h"
#include "log.h"
#include "platform.h"
#include "util.h"

struct outbox {
	struct inbox *ib;
	struct http *h;
	posted_fn fn;
	void *ctx;
	bool changed;
	struct post_ctx *posts;  /* in flight: the outbox's until settled or freed */
	/* Peers that already have an unfinished earlier message in this pass. */
	const char **blocked;
	size_t nblocked, capblocked;
};

struct post_ctx {
	struct post_ctx *next, *prev;
	struct outbox *ob;
	struct message *m;
	struct http_req *req;
};

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
	return ob;
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
		free(pc);
	}
	free(ob->blocked);
	free(ob);
}

void outbox_touch(struct outbox *ob) { ob->changed = true; }

int outbox_unposted(const struct outbox *ob)
{
	int n = 0;
	for (struct message *m = inbox_first(ob->ib); m; m = inbox_next(ob->ib, m))
		if (m->state == MSG_ANSWERED || (m->state == MSG_POSTING && m->post_body))
			n++;
	return n;
}

/* Worth another attempt: the network, overload, rate limits, and a token the
 * platform may accept again (it was accepted at registration). */
static bool post_retry(const struct http_resp *r)
{
	return http_transient(r) || r->status == 401;
}

static void on_posted(void *ctx, const struct http_resp *r)
{
	struct post_ctx *pc = ctx;
	struct outbox *ob = pc->ob;
	struct message *m = pc->m;
	post_unlink(ob, pc);
	free(pc);
	ob->changed = true;
	bool ok = r->status >= 200 && r->status < 300;
	char *why = ok ? NULL : platform_describe(r);
	char id[UUID_LEN + 1];
	memcpy(id, m->id, sizeof id);
	if (!ok)
		log_error("reply to message %s refused for good (%s): dropped", id, why);
	if (m->orphan) {
		inbox_orphan_done(ob->ib, m);
	} else {
		inbox_done(ob->ib, m);
	}
	if (ob->fn)
		ob->fn(ob->ctx, id, ok, why);
	free(why);
}

static bool blocked(struct outbox *ob, const char *peer)
{
	for (size_t i = 0; i < ob->nblocked; i++)
		if (strcmp(ob->blocked[i], peer) == 0)
			return true;
	return false;
}

static void block(struct outbox *ob, const char *peer)
{
	if (ob->nblocked == ob->capblocked) {
		ob->capblocked = ob->capblocked ? ob->capblocked * 2 : 16;
		ob->blocked = xrealloc(ob->blocked, ob->capblocked * sizeof *ob->blocked);
	}
	ob->blocked[ob->nblocked++] = peer;
}

static void start_post(struct outbox *ob, struct message *m)
{
	struct post_ctx *pc = xcalloc(1, sizeof *pc);
	pc->ob = ob;
	pc->m = m;
	pc->next = ob->posts;
	if (ob->posts)
		ob->posts->prev = pc;
	ob->posts = pc;
	m->state = MSG_POSTING;
	struct http_opts o = {
		.method = "POST",
		.path = m->post_path,
		.body = m->post_body,
		.body_len = strlen(m->post_body),
		.as_workspace = strstr(m->post_path, "/a2a") != NULL,
		.max_attempts = 0,
		.retry = post_retry,
		.done = on_posted,
		.ctx = pc,
	};
	pc->req = http_start(ob->h, &o);
}

/* One pass in order: a message that is not done holds back every later reply
 * to the same peer (the canvas counts as one peer), so each peer sees replies in
 * the order its messages arrived, while different peers proceed in parallel. */
static void visit(struct outbox *ob, struct message *m, bool *canvas_blocked)
{
	if (m->state == MSG_DONE)
		return;
	const char *peer = m->source_id;
	bool held = peer ? blocked(ob, peer) : *canvas_blocked;
	if (!held && m->state == MSG_ANSWERED && m->post_body)
		start_post(ob, m);
	if (peer) {
		if (!held)
			block(ob, peer);
	} else {
		*canvas_blocked = true;
	}
}

void outbox_pump(struct outbox *ob)
{
	if (!ob->changed)
		return;
	ob->changed = false;
	ob->nblocked = 0;
	bool canvas_blocked = false;
	for (struct message *m = inbox_first(ob->ib); m; m = inbox_next(ob->ib, m))
		visit(ob, m, &canvas_blocked);
}
