/* inbox.c: messages from rows to done; the window, the done set and the cursor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "inbox.h"
#include "json.h"
#include "rows.h"
#include "log.h"

/* Ids done recently, remembered so a re-seed after a 410 or a cold replay does
 * not hand out again what was just done. */
#define RECENT 4096
#define SUMMARY_MAX 120

struct inbox {
	char own_id[UUID_LEN + 1];
	struct message *head, *tail; /* platform order, from just after the cursor */
	struct message *orphans;     /* replies kept from a previous run, in reading order */
	int count;                   /* messages in the list */
	int n_open;                  /* handed out and not done */
	int n_queued;                /* in the list, QUEUED */
	int n_answered;              /* in the list, ANSWERED or POSTING */
	uint64_t reply_seq;          /* replies and new messages read so far */
	bool kept_released;          /* the fetch caught up: kept replies not seen again can go */
	char cursor[UUID_LEN + 1];   /* last row of the done prefix ("" = none yet) */
	char fetch_cursor[UUID_LEN + 1]; /* last row fetched ("" = cold: replay by time) */
	jv done_ids;                 /* object: done above the cursor, not seen again yet */
	jv pending_ids;              /* object: ids whose kept reply is being posted */
	jv recent;                   /* object: ids done recently (de-duplicates a re-seed) */
	char (*recent_ring)[UUID_LEN + 1];
	int recent_pos;
	bool dirty;                  /* something the state file holds has changed */
	int unsaved_replies;         /* replies read, not posted, not in the state file yet */
};

static bool set_has(jv set, const char *id) { return json_has(set, id); }
static jv set_add(jv set, const char *id) { return jv_object_set(set, jv_string(id), jv_true()); }
static jv set_del(jv set, const char *id) { return jv_object_delete(set, jv_string(id)); }

static void recent_add(struct inbox *ib, const char *id)
{
	char *slot = ib->recent_ring[ib->recent_pos];
	if (slot[0])
		ib->recent = set_del(ib->recent, slot);
	memcpy(slot, id, UUID_LEN + 1);
	ib->recent = set_add(ib->recent, id);
	ib->recent_pos = (ib->recent_pos + 1) % RECENT;
	if (ib->recent_pos == 0) {
		/* libjq 1.6 never reuses a deleted slot: rebuild the set from the
		 * ring once per turn, or it grows with every message ever done. */
		jv_free(ib->recent);
		ib->recent = jv_object();
		for (int i = 0; i < RECENT; i++)
			ib->recent = set_add(ib->recent, ib->recent_ring[i]);
	}
}

static void message_free(struct message *m)
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

	char *cur = json_string_dup(st, "last_since_id");
	if (cur && uuid_valid(cur)) {
		memcpy(ib->cursor, cur, UUID_LEN + 1);
		memcpy(ib->fetch_cursor, cur, UUID_LEN + 1);
	}
	free(cur);

	jv done = json_field(st, "done_ids");
	if (jv_get_kind(done) == JV_KIND_ARRAY) {
		jv_array_foreach(done, i, id) {
			if (jv_get_kind(id) == JV_KIND_STRING && uuid_valid(jv_string_value(id)))
				ib->done_ids = set_add(ib->done_ids, jv_string_value(id));
			jv_free(id);
		}
	}
	jv_free(done);

	/* Replies read but not posted before the last stop: post them first, in
	 * the order they were read. Their messages count as answered. */
	jv replies = json_field(st, "replies");
	struct message **tail = &ib->orphans;
	if (jv_get_kind(replies) == JV_KIND_ARRAY) {
		jv_array_foreach(replies, i, r) {
			char *id = json_string_dup(r, "id");
			char *path = id ? json_string_dup(r, "path") : NULL;
			jv body = json_field(r, "body");
			if (id && path && uuid_valid(id) && jv_get_kind(body) == JV_KIND_OBJECT) {
				struct message *m = xcalloc(1, sizeof *m);
				memcpy(m->id, id, UUID_LEN + 1);
				m->line = jv_null();
				m->orphan = true;
				m->state = MSG_ANSWERED;
				m->post_path = path;
				path = NULL;
				jv outbound = json_field(r, "outbound");
				m->outbound = jv_get_kind(outbound) == JV_KIND_TRUE;
				jv_free(outbound);
				m->reply_seq = ++ib->reply_seq;
				/* The peer's id is in the path: replies to it stay in order. */
				const char *p = m->post_path + strlen("/workspaces/");
				if (strstr(m->post_path, "/a2a"))
					m->source_id = xstrndup(p, UUID_LEN);
				jv s = jv_dump_string(jv_copy(body), 0);
				m->post_body = xstrdup(jv_string_value(s));
				jv_free(s);
				*tail = m;
				tail = &m->next;
				if (!m->outbound)
					ib->pending_ids = set_add(ib->pending_ids, m->id);
			}
			free(id);
			free(path);
			jv_free(body);
			jv_free(r);
		}
	}
	jv_free(replies);
	return ib;
}

void inbox_free(struct inbox *ib)
{
	if (!ib)
		return;
	while (ib->head) {
		struct message *m = ib->head;
		list_remove(ib, m);
		message_free(m);
	}
	while (ib->orphans) {
		struct message *m = ib->orphans;
		ib->orphans = m->next;
		message_free(m);
	}
	jv_free(ib->done_ids);
	jv_free(ib->pending_ids);
	jv_free(ib->recent);
	free(ib->recent_ring);
	free(ib);
}

/* Pops the done prefix: the cursor moves past every message that is done and
 * has nothing unfinished before it. */
static void advance(struct inbox *ib)
{
	while (ib->head && ib->head->state == MSG_DONE) {
		struct message *m = ib->head;
		memcpy(ib->cursor, m->id, UUID_LEN + 1);
		list_remove(ib, m);
		message_free(m);
		ib->dirty = true;
	}
}

static bool known(struct inbox *ib, const char *id)
{
	if (set_has(ib->recent, id))
		return true;
	for (struct message *m = ib->head; m; m = m->next)
		if (strcmp(m->id, id) == 0)
			return true;
	return false;
}

static struct message *done_entry(const char *id)
{
	struct message *m = xcalloc(1, sizeof *m);
	memcpy(m->id, id, UUID_LEN + 1);
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
		const char *id = jv_string_value(idv);
		memcpy(ib->fetch_cursor, id, UUID_LEN + 1);
		if (known(ib, id)) {
			jv_free(idv);
			jv_free(row);
			continue;
		}
		if (set_has(ib->done_ids, id)) {
			/* Done before a restart: not handed out again. */
			ib->done_ids = set_del(ib->done_ids, id);
			list_append(ib, done_entry(id));
			jv_free(idv);
			jv_free(row);
			continue;
		}
		jv method = json_field(row, "method");
		bool echo = jv_get_kind(method) == JV_KIND_STRING && strcmp(jv_string_value(method), "notify") == 0;
		jv_free(method);
		if (echo) {
			/* Our own canvas replies, echoed: never a message, but the cursor moves on. */
			list_append(ib, done_entry(id));
			jv_free(idv);
			jv_free(row);
			continue;
		}
		char idcopy[UUID_LEN + 1];
		memcpy(idcopy, id, UUID_LEN + 1);
		jv_free(idv);
		jv line = rows_message(row, ib->own_id);
		if (!jv_is_valid(line)) {
			jv msg = jv_invalid_get_msg(line);
			log_error("skipping activity row %s: %s", idcopy,
				  jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "invalid row");
			jv_free(msg);
			list_append(ib, done_entry(idcopy));
			continue;
		}
		struct message *m = xcalloc(1, sizeof *m);
		memcpy(m->id, idcopy, UUID_LEN + 1);
		m->source_id = json_string_dup(line, "source_id");
		m->context_id = json_string_dup(line, "context_id");
		m->task_id = json_string_dup(line, "task_id");
		m->summary = summary_of(line);
		m->line = line;
		if (set_has(ib->pending_ids, m->id)) {
			/* Its reply, kept from before a restart, is being posted. */
			m->state = MSG_POSTING;
			ib->n_open++;
			ib->n_answered++;
		} else {
			m->state = MSG_QUEUED;
			ib->n_queued++;
			queued++;
		}
		list_append(ib, m);
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
	/* The saved cursor is gone on the platform too: a restart replays by time. */
	if (!ib->head) {
		ib->cursor[0] = '\0';
		ib->dirty = true;
	}
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

struct message *inbox_next_queued(struct inbox *ib, int64_t now)
{
	for (struct message *m = ib->head; m; m = m->next)
		if (m->state == MSG_QUEUED && m->not_before <= now)
			return m;
	return NULL;
}

int64_t inbox_next_due(struct inbox *ib, int64_t now)
{
	int64_t best = -1;
	for (struct message *m = ib->head; m; m = m->next)
		if (m->state == MSG_QUEUED) {
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
	m->handouts++;
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
	ib->pending_ids = set_del(ib->pending_ids, o->id);
	struct message *m = o->outbound ? NULL : inbox_find(ib, o->id);
	if (m)
		inbox_done(ib, m);
	else if (!o->outbound)
		ib->done_ids = set_add(ib->done_ids, o->id);
	if (!o->outbound)
		recent_add(ib, o->id);
	ib->dirty = true;
	message_free(o);
}

int inbox_unfinished(const struct inbox *ib) { return ib->n_queued + ib->n_open - ib->n_answered; }
int inbox_open_count(const struct inbox *ib) { return ib->n_open; }
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
		ib->pending_ids = set_del(ib->pending_ids, o->id);
		message_free(o);
		n++;
	}
	return n;
}
const char *inbox_cursor(const struct inbox *ib) { return ib->cursor; }
const char *inbox_fetch_cursor(const struct inbox *ib) { return ib->fetch_cursor; }
bool inbox_dirty(const struct inbox *ib) { return ib->dirty; }
void inbox_mark_dirty(struct inbox *ib) { ib->dirty = true; }
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

static jv reply_entry(const struct message *m)
{
	jv r = jv_object();
	r = jv_object_set(r, jv_string("id"), jv_string(m->id));
	r = jv_object_set(r, jv_string("path"), jv_string(m->post_path));
	r = jv_object_set(r, jv_string("body"), jv_parse(m->post_body));
	if (m->outbound)
		r = jv_object_set(r, jv_string("outbound"), jv_true());
	return r;
}

static int by_reply_seq(const void *a, const void *b)
{
	uint64_t x = (*(struct message *const *)a)->reply_seq, y = (*(struct message *const *)b)->reply_seq;
	return x < y ? -1 : x > y;
}

jv inbox_state(struct inbox *ib, jv st)
{
	st = jv_object_set(st, jv_string("last_since_id"), jv_string(ib->cursor));
	jv done = jv_keys(jv_copy(ib->done_ids));
	/* Replies and new messages in the order they were read: a restart posts
	 * them in that order per destination. */
	size_t n = 0, cap = 16;
	struct message **unposted = xmalloc(cap * sizeof *unposted);
	for (struct message *m = inbox_first(ib); m; m = inbox_next(ib, m)) {
		if (m->state == MSG_DONE && !m->orphan)
			done = jv_array_append(done, jv_string(m->id));
		else if ((m->state == MSG_ANSWERED || m->state == MSG_POSTING) && m->post_body) {
			if (n == cap)
				unposted = xrealloc(unposted, (cap *= 2) * sizeof *unposted);
			unposted[n++] = m;
		}
		m->unsaved = false;
	}
	qsort(unposted, n, sizeof *unposted, by_reply_seq);
	jv replies = jv_array();
	for (size_t i = 0; i < n; i++)
		replies = jv_array_append(replies, reply_entry(unposted[i]));
	free(unposted);
	st = jv_object_set(st, jv_string("done_ids"), done);
	st = jv_object_set(st, jv_string("replies"), replies);
	ib->dirty = false;
	ib->unsaved_replies = 0;
	return st;
}
