/* inbox_state.c: the inbox and the state file: what a restart starts from, and what is written back. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "inbox_internal.h"

void inbox_load(struct inbox *ib, jv st)
{
	ib->state_ack = -1;
	char *cur = json_string_dup(st, "last_since_id");
	if (cur && uuid_valid(cur)) {
		memcpy(ib->cursor, cur, UUID_LEN + 1);
		memcpy(ib->fetch_cursor, cur, UUID_LEN + 1);
	}
	free(cur);
	/* state.c has checked both; done_seq means nothing without done_at. */
	char *at = json_string_dup(st, "done_at");
	if (at && ts_parse(at, &ib->floor.at)) {
		jv seq = json_field(st, "done_seq");
		ib->floor.has_at = ib->have_floor = true;
		ib->floor.seq = rows_seq_number(seq);
		jv_free(seq);
	}
	free(at);
	char *from = json_string_dup(st, "replay_from");
	ib->have_replay_from = from && !ib->have_floor && ts_parse(from, &ib->replay_from);
	free(from);

	jv done = json_field(st, "done_ids");
	if (jv_get_kind(done) == JV_KIND_ARRAY) {
		jv_array_foreach(done, i, id) {
			if (jv_get_kind(id) == JV_KIND_STRING && uuid_valid(jv_string_value(id)))
				ib->done_ids = inbox_set_add(ib->done_ids, jv_string_value(id));
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
					ib->pending_ids = inbox_set_add(ib->pending_ids, m->id);
			}
			free(id);
			free(path);
			jv_free(body);
			jv_free(r);
		}
	}
	jv_free(replies);
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

/* The highest seq below which everything is done: the cursor row's, lowered
 * when a row after the cursor with a smaller seq (one that committed late) is
 * not done yet. -1: none known. */
static int64_t ack_seq(const struct inbox *ib)
{
	int64_t ack = ib->have_floor ? ib->floor.seq : -1;
	for (const struct message *m = ib->head; m && ack >= 0; m = m->next)
		if (m->state != MSG_DONE && m->key.seq >= 0 && m->key.seq <= ack)
			ack = m->key.seq - 1;
	return ack;
}

jv inbox_state(struct inbox *ib, jv st)
{
	st = jv_object_set(st, jv_string("last_since_id"), jv_string(ib->cursor));
	if (ib->have_floor) {
		char at[TS_TEXT_MAX];
		ts_format(ib->floor.at, at);
		st = jv_object_set(st, jv_string("done_at"), jv_string(at));
		st = ib->floor.seq >= 0 ? jv_object_set(st, jv_string("done_seq"), jv_number((double)ib->floor.seq))
					: jv_object_delete(st, jv_string("done_seq"));
	} else {
		st = jv_object_delete(st, jv_string("done_at"));
		st = jv_object_delete(st, jv_string("done_seq"));
	}
	if (ib->have_replay_from) {
		char from[TS_TEXT_MAX];
		ts_format(ib->replay_from, from);
		st = jv_object_set(st, jv_string("replay_from"), jv_string(from));
	} else {
		st = jv_object_delete(st, jv_string("replay_from"));
	}
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
	}
	qsort(unposted, n, sizeof *unposted, by_reply_seq);
	jv replies = jv_array();
	for (size_t i = 0; i < n; i++)
		replies = jv_array_append(replies, reply_entry(unposted[i]));
	free(unposted);
	st = jv_object_set(st, jv_string("done_ids"), done);
	st = jv_object_set(st, jv_string("replies"), replies);
	ib->state_ack = ack_seq(ib);
	return st;
}

int64_t inbox_saved(struct inbox *ib)
{
	for (struct message *m = inbox_first(ib); m; m = inbox_next(ib, m))
		m->unsaved = false;
	ib->dirty = false;
	ib->unsaved_replies = 0;
	return ib->state_ack;
}
