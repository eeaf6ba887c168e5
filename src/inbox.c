/* inbox.c: messages from rows to done; the window, the done set, the cursor and where the last done row stands. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "inbox.h"
#include "inbox_internal.h"
#include "json.h"
#include "rows.h"
#include "log.h"

#define SUMMARY_MAX 120
/* A replay after the last done row reads back this much further than its time:
 * that time is the platform's clock, the window is asked in the bridge's, and
 * the two may disagree. Rows before the done row are dropped anyway. */
#define REPLAY_MARGIN_NS (600LL * 1000000000)

static void recent_add(struct inbox *ib, const char *id)
{
	char *slot = ib->recent_ring[ib->recent_pos];
	if (slot[0])
		ib->recent = inbox_set_del(ib->recent, slot);
	memcpy(slot, id, UUID_LEN + 1);
	ib->recent = inbox_set_add(ib->recent, id);
	ib->recent_pos = (ib->recent_pos + 1) % RECENT;
	if (ib->recent_pos == 0) {
		/* libjq 1.6 never reuses a deleted slot: rebuild the set from the
		 * ring once per turn, or it grows with every message ever done. */
		jv_free(ib->recent);
		ib->recent = jv_object();
		for (int i = 0; i < RECENT; i++)
			ib->recent = inbox_set_add(ib->recent, ib->recent_ring[i]);
	}
}

void inbox_message_free(struct message *m)
{
	free(m->source_id);
	free(m->context_id);
	free(m->task_id);
	free(m->summary);
	free(m->post_path);
	free(m->post_body);
	jv_free(m->line);
	free(m);
}

static void list_append(struct inbox *ib, struct message *m)
{
	m->prev = ib->tail;
	m->next = NULL;
	if (ib->tail)
		ib->tail->next = m;
	else
		ib->head = m;
	ib->tail = m;
	ib->count++;
}

static void list_remove(struct inbox *ib, struct message *m)
{
	if (m->prev)
		m->prev->next = m->next;
	else
		ib->head = m->next;
	if (m->next)
		m->next->prev = m->prev;
	else
		ib->tail = m->prev;
	ib->count--;
}

struct inbox *inbox_new(const char *own_id, jv st)
{
	struct inbox *ib = xcalloc(1, sizeof *ib);
	snprintf(ib->own_id, sizeof ib->own_id, "%s", own_id);
	ib->done_ids = jv_object();
	ib->pending_ids = jv_object();
	ib->recent = jv_object();
	ib->recent_ring = xcalloc(RECENT, sizeof *ib->recent_ring);

	inbox_load(ib, st);
	return ib;
}

void inbox_free(struct inbox *ib)
{
	if (!ib)
		return;
	while (ib->head) {
		struct message *m = ib->head;
		list_remove(ib, m);
		inbox_message_free(m);
	}
	while (ib->orphans) {
		struct message *m = ib->orphans;
		ib->orphans = m->next;
		inbox_message_free(m);
	}
	jv_free(ib->done_ids);
	jv_free(ib->pending_ids);
	jv_free(ib->recent);
	free(ib->recent_ring);
	free(ib);
}

/* Pops the done prefix: the cursor moves past every message that is done and
 * has nothing unfinished before it, and the floor with it. */
static void advance(struct inbox *ib)
{
	while (ib->head && ib->head->state == MSG_DONE) {
		struct message *m = ib->head;
		memcpy(ib->cursor, m->id, UUID_LEN + 1);
		if (m->key.has_at) {
			ib->floor = m->key;
			ib->have_floor = true;
			ib->have_replay_from = false;
		}
		/* Rows that were never messages (echoes, bad rows, own traffic) are
		 * remembered too: a replay after a 410 must not take them for new. */
		if (!inbox_set_has(ib->recent, m->id))
			recent_add(ib, m->id);
		list_remove(ib, m);
		inbox_message_free(m);
		ib->dirty = true;
	}
}

static bool known(struct inbox *ib, const char *id)
{
	if (inbox_set_has(ib->recent, id))
		return true;
	for (struct message *m = ib->head; m; m = m->next)
		if (strcmp(m->id, id) == 0)
			return true;
	return false;
}

/* A row at or before the last done row is done. At the same time only the
 * seqs tell: without one on either side the rows may differ. */
static bool below_floor(const struct inbox *ib, const struct row_key *k)
{
	if (!ib->have_floor || !k->has_at)
		return false;
	int c = ts_cmp(k->at, ib->floor.at);
	if (c != 0)
		return c < 0;
	return k->seq >= 0 && ib->floor.seq >= 0 && k->seq <= ib->floor.seq;
}

static struct message *done_entry(const char *id, const struct row_key *key)
{
	struct message *m = xcalloc(1, sizeof *m);
	memcpy(m->id, id, UUID_LEN + 1);
	m->key = *key;
	m->line = jv_null();
	m->state = MSG_DONE;
	return m;
}

static char *summary_of(jv line)
{
	jv t = json_field(line, "text");
	char *s = NULL;
	if (jv_get_kind(t) == JV_KIND_STRING) {
		const char *txt = jv_string_value(t);
		size_t n = strlen(txt);
		if (n > SUMMARY_MAX) {
			/* Cut on a UTF-8 boundary. */
			n = SUMMARY_MAX;
			while (n > 0 && ((unsigned char)txt[n] & 0xC0) == 0x80)
				n--;
		}
		s = xstrndup(txt, n);
		for (char *p = s; *p; p++)
			if ((unsigned char)*p < 0x20)
				*p = ' ';
	}
	jv_free(t);
	return s;
}

/* The request's taskId (line not consumed), or NULL. */
static char *task_id_of(jv line)
{
	jv request = json_field(line, "request"), params = json_field(request, "params");
	jv message = json_field(params, "message");
	char *t = json_string_dup(message, "taskId");
	jv_free(message);
	jv_free(params);
	jv_free(request);
	return t;
}

/* Says why a row is never handed out: calls that cannot be served at the
 * normal level, the workspace's own traffic only at -v. */
static void log_skipped(const char *id, jv row, enum row_kind kind)
{
	if (kind == ROW_OWN) {
		log_debug("activity row %s is this workspace's own traffic: not handed out, not answered", id);
	} else if (kind == ROW_UNSERVABLE) {
		jv method = json_field(row, "method");
		jv d = rows_describe(method);
		log_info("skipping activity row %s: method %s is not a message a poll-mode workspace can serve", id,
			 jv_string_value(d));
		jv_free(d);
		jv_free(method);
	}
}

/* One row (consumed) that is new: a message queued, or a done entry. */
static bool add_row(struct inbox *ib, const char *id, const struct row_key *key, jv row)
{
	if (inbox_set_has(ib->done_ids, id)) {
		/* Done before a restart: not handed out again. */
		ib->done_ids = inbox_set_del(ib->done_ids, id);
		list_append(ib, done_entry(id, key));
		jv_free(row);
		return false;
	}
	enum row_kind kind = rows_kind(row, ib->own_id);
	if (kind != ROW_MESSAGE && kind != ROW_UPLOAD) {
		/* Never a message, but the cursor moves past it. */
		log_skipped(id, row, kind);
		list_append(ib, done_entry(id, key));
		jv_free(row);
		return false;
	}
	jv line = rows_message(row, ib->own_id);
	if (!jv_is_valid(line)) {
		jv msg = jv_invalid_get_msg(line);
		log_error("skipping activity row %s: %s", id,
			  jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "invalid row");
		jv_free(msg);
		list_append(ib, done_entry(id, key));
		return false;
	}
	struct message *m = xcalloc(1, sizeof *m);
	memcpy(m->id, id, UUID_LEN + 1);
	m->key = *key;
	m->source_id = json_string_dup(line, "source_id");
	m->context_id = json_string_dup(line, "context_id");
	m->task_id = task_id_of(line);
	m->summary = summary_of(line);
	m->line = line;
	list_append(ib, m);
	if (inbox_set_has(ib->pending_ids, m->id)) {
		/* Its reply, kept from before a restart, is being posted. */
		m->state = MSG_POSTING;
		ib->n_open++;
		ib->n_answered++;
		return false;
	}
	m->state = MSG_QUEUED;
	ib->n_queued++;
	if (kind == ROW_UPLOAD) {
		m->upload_wait = true;
		ib->uploads_waiting++;
	}
	log_debug("received: message %s from %s%s%s", m->id, m->source_id ? "peer " : "the canvas",
		  m->source_id ? m->source_id : "", kind == ROW_UPLOAD ? " (an upload: its file is fetched first)" : "");
	return true;
}

int inbox_add_rows(struct inbox *ib, jv rows)
{
	int queued = 0;
	if (jv_get_kind(rows) != JV_KIND_ARRAY) {
		jv_free(rows);
		return 0;
	}
	jv_array_foreach(rows, i, row) {
		jv idv = json_field(row, "id");
		if (!json_is_uuid(idv)) {
			/* Without a usable id it cannot become the cursor either. */
			log_error("skipping an activity row without a valid id");
			jv_free(idv);
			jv_free(row);
			continue;
		}
		char id[UUID_LEN + 1];
		memcpy(id, jv_string_value(idv), UUID_LEN + 1);
		jv_free(idv);
		memcpy(ib->fetch_cursor, id, UUID_LEN + 1);
		struct row_key key = rows_key(row);
		if (known(ib, id) || below_floor(ib, &key)) {
			jv_free(row);
			continue;
		}
		queued += add_row(ib, id, &key, row);
	}
	jv_free(rows);
	advance(ib);
	return queued;
}

void inbox_caught_up(struct inbox *ib)
{
	if (jv_object_length(jv_copy(ib->done_ids)) > 0) {
		jv_free(ib->done_ids);
		ib->done_ids = jv_object();
		ib->dirty = true;
	}
}

void inbox_reseed(struct inbox *ib)
{
	ib->fetch_cursor[0] = '\0';
	/* The saved cursor is gone on the platform too: a restart replays by
	 * time, from the last done row (the floor stays). */
	if (!ib->head) {
		ib->cursor[0] = '\0';
		ib->dirty = true;
	}
}

bool inbox_floor(const struct inbox *ib, struct row_key *out)
{
	if (ib->have_floor)
		*out = ib->floor;
	return ib->have_floor;
}

bool inbox_replay_anchor(const struct inbox *ib, struct ts *out)
{
	if (ib->have_floor)
		*out = ts_add_ns(ib->floor.at, -REPLAY_MARGIN_NS);
	else if (ib->have_replay_from)
		*out = ib->replay_from;
	else
		return false;
	return true;
}

void inbox_set_replay_from(struct inbox *ib, struct ts from)
{
	if (ib->have_floor || ib->have_replay_from)
		return;
	ib->replay_from = from;
	ib->have_replay_from = true;
	ib->dirty = true;
}

struct message *inbox_find(struct inbox *ib, const char *id)
{
	for (struct message *m = ib->head; m; m = m->next)
		if (strcmp(m->id, id) == 0)
			return m;
	return NULL;
}

struct message *inbox_oldest_open(struct inbox *ib)
{
	for (struct message *m = ib->head; m; m = m->next)
		if (m->state == MSG_OPEN)
			return m;
	return NULL;
}

static struct message *next_queued(struct inbox *ib, int64_t now, bool again_only)
{
	for (struct message *m = ib->head; m; m = m->next)
		if (m->state == MSG_QUEUED && !m->upload_wait && m->not_before <= now && (!again_only || m->handouts > 0))
			return m;
	return NULL;
}

struct message *inbox_next_queued(struct inbox *ib, int64_t now) { return next_queued(ib, now, false); }
struct message *inbox_next_requeued(struct inbox *ib, int64_t now) { return next_queued(ib, now, true); }


int64_t inbox_next_due(struct inbox *ib, int64_t now)
{
	int64_t best = -1;
	for (struct message *m = ib->head; m; m = m->next)
		if (m->state == MSG_QUEUED && !m->upload_wait) {
			int64_t d = m->not_before > now ? m->not_before - now : 0;
			if (best < 0 || d < best)
				best = d;
		}
	return best;
}

void inbox_open(struct inbox *ib, struct message *m, int64_t now)
{
	if (m->state == MSG_QUEUED) {
		ib->n_open++;
		ib->n_queued--;
	}
	m->state = MSG_OPEN;
	m->opened_at = now;
	if (m->handouts++ == 0)
		ib->handed_count++;
}

void inbox_answer(struct inbox *ib, struct message *m, char *path, char *body)
{
	free(m->post_path);
	free(m->post_body);
	m->post_path = path;
	m->post_body = body;
	if (m->state == MSG_OPEN)
		ib->n_answered++;
	m->reply_seq = ++ib->reply_seq;
	m->state = MSG_ANSWERED;
	if (!m->unsaved)
		ib->unsaved_replies++;
	m->unsaved = true;
	ib->dirty = true;
}

/* The counters for m leaving its state (it is in the list). */
static void leave_state(struct inbox *ib, const struct message *m)
{
	if (m->state == MSG_QUEUED)
		ib->n_queued--;
	else if (m->state != MSG_DONE)
		ib->n_open--;
	if (m->state == MSG_ANSWERED || m->state == MSG_POSTING)
		ib->n_answered--;
}

static void finish(struct inbox *ib, struct message *m)
{
	if (m->handouts > 0 && m->state != MSG_DONE)
		ib->done_count++;
	leave_state(ib, m);
	m->state = MSG_DONE;
	if (m->unsaved)
		ib->unsaved_replies--;
	m->unsaved = false;
	free(m->post_path);
	free(m->post_body);
	m->post_path = m->post_body = NULL;
	jv_free(m->line);
	m->line = jv_null();
	recent_add(ib, m->id);
	ib->dirty = true;
}

void inbox_done(struct inbox *ib, struct message *m)
{
	finish(ib, m);
	advance(ib);
}

void inbox_failed(struct inbox *ib, struct message *m)
{
	if (m->handouts > 0 && m->state != MSG_DONE)
		ib->failed_count++;
	inbox_done(ib, m);
}

void inbox_requeue(struct inbox *ib, struct message *m, int64_t not_before)
{
	leave_state(ib, m);
	ib->n_queued++;
	m->state = MSG_QUEUED;
	m->not_before = not_before;
}

int inbox_requeue_open(struct inbox *ib)
{
	int n = 0;
	for (struct message *m = ib->head; m; m = m->next)
		if (m->state == MSG_OPEN) {
			inbox_requeue(ib, m, 0);
			n++;
		}
	return n;
}

void inbox_orphan_done(struct inbox *ib, struct message *o)
{
	struct message **pp = &ib->orphans;
	while (*pp && *pp != o)
		pp = &(*pp)->next;
	if (*pp)
		*pp = o->next;
	ib->pending_ids = inbox_set_del(ib->pending_ids, o->id);
	struct message *m = o->outbound ? NULL : inbox_find(ib, o->id);
	if (m)
		inbox_done(ib, m);
	else if (!o->outbound)
		ib->done_ids = inbox_set_add(ib->done_ids, o->id);
	if (!o->outbound)
		recent_add(ib, o->id);
	ib->dirty = true;
	inbox_message_free(o);
}

int inbox_unfinished(const struct inbox *ib) { return ib->n_queued + ib->n_open - ib->n_answered; }
void inbox_upload_ready(struct inbox *ib, struct message *m)
{
	if (m->upload_wait)
		ib->uploads_waiting--;
	m->upload_wait = false;
}

int inbox_in_play(const struct inbox *ib)
{
	int n = 0;
	for (const struct message *m = ib->head; m; m = m->next)
		n += m->handouts > 0 && m->state != MSG_DONE;
	return n;
}

int inbox_unanswered(const struct inbox *ib)
{
	int n = 0;
	for (const struct message *m = ib->head; m; m = m->next)
		n += m->state == MSG_QUEUED || m->state == MSG_OPEN;
	return n;
}
int inbox_uploads_waiting(const struct inbox *ib) { return ib->uploads_waiting; }
long inbox_done_count(const struct inbox *ib) { return ib->done_count; }
struct inbox_tally inbox_tally(const struct inbox *ib)
{
	long failed = ib->failed_count;
	return (struct inbox_tally){ ib->handed_count, ib->done_count - failed, inbox_in_play(ib), failed };
}
int inbox_open_count(const struct inbox *ib) { return ib->n_open; }
int inbox_queued_count(const struct inbox *ib) { return ib->n_queued; }
int inbox_handed_count(const struct inbox *ib) { return ib->n_open - ib->n_answered; }
bool inbox_kept_released(const struct inbox *ib) { return ib->kept_released; }
void inbox_fetch_complete(struct inbox *ib) { ib->kept_released = true; }

struct message *inbox_add_outbound(struct inbox *ib, const char *id, const char *dest, char *path, char *body)
{
	struct message *m = xcalloc(1, sizeof *m);
	snprintf(m->id, sizeof m->id, "%s", id);
	m->line = jv_null();
	m->orphan = m->outbound = true;
	m->state = MSG_ANSWERED;
	m->source_id = dest ? xstrdup(dest) : NULL;
	m->post_path = path;
	m->post_body = body;
	m->reply_seq = ++ib->reply_seq;
	m->unsaved = true;
	ib->unsaved_replies++;
	ib->dirty = true;
	struct message **tail = &ib->orphans;
	while (*tail)
		tail = &(*tail)->next;
	*tail = m;
	return m;
}

int inbox_adopt_kept(struct inbox *ib)
{
	int n = 0;
	struct message **pp = &ib->orphans;
	while (*pp) {
		struct message *o = *pp;
		struct message *m = o->outbound || o->state != MSG_ANSWERED ? NULL : inbox_find(ib, o->id);
		if (!m || m->state != MSG_POSTING || m->post_body) {
			pp = &o->next;
			continue;
		}
		/* The list entry already counts as answered (added while its reply
		 * was pending). */
		m->post_path = o->post_path;
		m->post_body = o->post_body;
		o->post_path = o->post_body = NULL;
		m->reply_seq = o->reply_seq;
		m->state = MSG_ANSWERED;
		*pp = o->next;
		ib->pending_ids = inbox_set_del(ib->pending_ids, o->id);
		inbox_message_free(o);
		n++;
	}
	return n;
}
const char *inbox_cursor(const struct inbox *ib) { return ib->cursor; }
const char *inbox_fetch_cursor(const struct inbox *ib) { return ib->fetch_cursor; }
bool inbox_dirty(const struct inbox *ib) { return ib->dirty; }
int inbox_unsaved_replies(const struct inbox *ib) { return ib->unsaved_replies; }

struct message *inbox_oldest_active(struct inbox *ib)
{
	for (struct message *m = ib->head; m; m = m->next)
		if (m->state == MSG_OPEN || m->state == MSG_ANSWERED || m->state == MSG_POSTING)
			return m;
	return NULL;
}

struct message *inbox_first(struct inbox *ib)
{
	return ib->orphans ? ib->orphans : ib->head;
}

struct message *inbox_next(struct inbox *ib, struct message *m)
{
	if (!m)
		return inbox_first(ib);
	if (m->orphan && !m->next)
		return ib->head; /* the kept replies are done: on to the list */
	return m->next;
}
