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
				/* The peer's id is in the path: replies to it stay in order. */
				const char *p = m->post_path + strlen("/workspaces/");
				if (strstr(m->post_path, "/a2a"))
					m->source_id = xstrndup(p, UUID_LEN);
				jv s = jv_dump_string(jv_copy(body), 0);
				m->post_body = xstrdup(jv_string_value(s));
				jv_free(s);
				*tail = m;
				tail = &m->next;
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
	return r;
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
	jv replies = jv_array();
	for (struct message *o = ib->orphans; o; o = o->next)
		replies = jv_array_append(replies, reply_entry(o));
	for (struct message *m = ib->head; m; m = m->next) {
		if (m->state == MSG_DONE)
			done = jv_array_append(done, jv_string(m->id));
		else if ((m->state == MSG_ANSWERED || m->state == MSG_POSTING) && m->post_body)
			replies = jv_array_append(replies, reply_entry(m));
	}
	st = jv_object_set(st, jv_string("done_ids"), done);
	st = jv_object_set(st, jv_string("replies"), replies);
	ib->state_ack = ack_seq(ib);
	return st;
}

int64_t inbox_saved(struct inbox *ib)
{
	for (struct message *m = ib->head; m; m = m->next)
		m->unsaved = false;
	ib->dirty = false;
	ib->unsaved_replies = 0;
	return ib->state_ack;
}
