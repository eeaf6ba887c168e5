/* route.c: which queued message goes to the handler next: platform order; under --per, one conversation's in order. */
#include <config.h>

#include <stdlib.h>

#include "route.h"
#include "bridge.h"
#include "inbox.h"
#include "util.h"

void route_begin(struct route *r, int64_t now)
{
	*r = (struct route){ .now = now };
}

static bool is_blocked(const struct route *r, const struct conv_id *c)
{
	for (int i = 0; i < r->n_blocked; i++)
		if (conv_same(&r->blocked[i], c))
			return true;
	return false;
}

/* Later messages of c wait for this pass. c's id is borrowed from a message
 * that stays in the queue during the pass. */
static void block(struct route *r, const struct conv_id *c)
{
	if (r->n_blocked == r->cap_blocked) {
		r->cap_blocked = r->cap_blocked ? 2 * r->cap_blocked : 8;
		r->blocked = xrealloc(r->blocked, (size_t)r->cap_blocked * sizeof *r->blocked);
	}
	r->blocked[r->n_blocked++] = *c;
}

/* Under --per: m's conversation can take it now (its co-process started if
 * it had none and a slot is free); r->co set in co-process mode. */
static bool takes(struct bridge *b, struct route *r, struct message *m, const struct conv_id *c)
{
	if (b->mode == MODE_EXEC)
		return !exec_conv_busy(b, c);
	struct coproc *co = coproc_find(b, c);
	if (co) {
		r->co = co;
		return coproc_takes(co);
	}
	if (!coproc_slot_free(b)) {
		r->waiting++;
		return false;
	}
	r->co = coproc_open(b, c, m);
	return r->co != NULL;
}

static struct message *next_per_conversation(struct bridge *b, struct route *r)
{
	if (r->walked)
		return NULL;
	struct message *m = r->walking ? r->cursor : inbox_first(b->ib);
	r->walking = true;
	for (; m && b->phase == PH_RUN; m = inbox_next(b->ib, m)) {
		if (m->orphan || m->state != MSG_QUEUED || m->upload_wait)
			continue;
		struct conv_id c = conv_of(b->s->per_by, m);
		if (is_blocked(r, &c))
			continue;
		if (b->mode == MODE_EXEC && !exec_ready(b))
			break; /* --concurrency: nothing more this pass */
		if (m->not_before > r->now || !takes(b, r, m, &c)) {
			block(r, &c);
			continue;
		}
		r->cursor = inbox_next(b->ib, m);
		return m;
	}
	r->walked = true;
	return NULL;
}

struct message *route_next(struct bridge *b, struct route *r)
{
	r->co = NULL;
	if (b->s->per_by != PER_NONE)
		return next_per_conversation(b, r);
	if (b->mode == MODE_COPROC)
		r->co = b->co.list;
	return inbox_next_queued(b->ib, r->now);
}

int64_t route_next_due(struct bridge *b, int64_t now)
{
	if (b->s->per_by == PER_NONE)
		return inbox_next_due(b->ib, now);
	/* A message due now that the last pass did not hand out waits for its
	 * conversation, which an event (a reply, an exit) frees: only a message
	 * not due yet needs a timer. */
	int64_t wait = -1;
	for (struct message *m = inbox_first(b->ib); m; m = inbox_next(b->ib, m))
		if (!m->orphan && m->state == MSG_QUEUED && !m->upload_wait && m->not_before > now)
			wait = wait_min(wait, m->not_before - now);
	return wait;
}

void route_skip(struct bridge *b, struct route *r, struct message *m)
{
	if (b->s->per_by == PER_NONE)
		return;
	struct conv_id c = conv_of(b->s->per_by, m);
	block(r, &c);
}

void route_restart(struct route *r)
{
	r->walking = r->walked = false;
	r->cursor = NULL;
	r->n_blocked = 0;
	r->waiting = 0;
}

void route_end(struct bridge *b, struct route *r)
{
	if (b->s->per_by != PER_NONE && b->mode == MODE_COPROC)
		coproc_want_slots(b, r->waiting);
	free(r->blocked);
	r->blocked = NULL;
}
