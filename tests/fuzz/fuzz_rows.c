/* fuzz_rows.c: libFuzzer target for activity answers: the page is parsed,
 * sorted, turned into message lines and added to a fresh inbox, whose
 * messages are then handed out, answered, done or put back as the loop does.
 *
 * Input: the body of a GET /workspaces/<id>/activity answer. Checks: the sort
 * keeps every row and orders them; a message line is one JSON object with the
 * documented keys; adding the same page again queues nothing (no duplicate of
 * work already fetched or done); the state written is well formed. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jv.h>

#include "inbox.h"
#include "log.h"
#include "platform.h"
#include "rows.h"
#include "util.h"

#include "fuzz_jq.h"

static const char own_id[] = "11111111-2222-4333-8444-555555555555";

static bool is_string_or_null(jv obj, const char *key)
{
	jv v = jv_object_get(jv_copy(obj), jv_string(key));
	bool ok = jv_get_kind(v) == JV_KIND_STRING || jv_get_kind(v) == JV_KIND_NULL;
	jv_free(v);
	return ok;
}

static void check_line(jv line /* consumed */)
{
	CHECK(jv_get_kind(line) == JV_KIND_OBJECT);
	static const char *keys[] = { "id", "seq", "workspace_id", "source_id", "origin", "peer_name",
				      "peer_role", "method", "text", "parts", "files", "message_id",
				      "context_id", "delegation_id", "created_at", "request" };
	/* Every key, in the documented order. */
	jv have = jv_keys_unsorted(jv_copy(line));
	CHECK(jv_array_length(jv_copy(have)) == (int)(sizeof keys / sizeof *keys));
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		jv k = jv_array_get(jv_copy(have), (int)i);
		CHECK(jv_get_kind(k) == JV_KIND_STRING && strcmp(jv_string_value(k), keys[i]) == 0);
		jv_free(k);
	}
	jv_free(have);
	jv id = jv_object_get(jv_copy(line), jv_string("id"));
	CHECK(jv_get_kind(id) == JV_KIND_STRING && uuid_valid(jv_string_value(id)));
	jv_free(id);
	jv origin = jv_object_get(jv_copy(line), jv_string("origin"));
	CHECK(jv_get_kind(origin) == JV_KIND_STRING);
	CHECK(strcmp(jv_string_value(origin), "canvas") == 0 || strcmp(jv_string_value(origin), "agent") == 0 ||
	      strcmp(jv_string_value(origin), "system") == 0);
	jv_free(origin);
	jv text = jv_object_get(jv_copy(line), jv_string("text"));
	CHECK(jv_get_kind(text) == JV_KIND_STRING);
	jv_free(text);
	jv parts = jv_object_get(jv_copy(line), jv_string("parts"));
	CHECK(jv_get_kind(parts) == JV_KIND_ARRAY);
	jv_free(parts);
	CHECK(is_string_or_null(line, "source_id"));
	CHECK(is_string_or_null(line, "method"));
	CHECK(is_string_or_null(line, "context_id"));
	CHECK(is_string_or_null(line, "delegation_id"));
	CHECK(is_string_or_null(line, "peer_name"));
	CHECK(is_string_or_null(line, "peer_role"));
	CHECK(is_string_or_null(line, "created_at"));
	jv seq = jv_object_get(jv_copy(line), jv_string("seq"));
	CHECK(jv_get_kind(seq) == JV_KIND_NULL || rows_seq_number(seq) >= 0);
	jv_free(seq);
	jv files = jv_object_get(jv_copy(line), jv_string("files"));
	CHECK(jv_get_kind(files) == JV_KIND_ARRAY && jv_array_length(files) == 0);

	/* What goes on stdout: one compact line that reads back as an object. */
	jv dumped = jv_dump_string(line, 0);
	CHECK(memchr(jv_string_value(dumped), '\n', (size_t)jv_string_length_bytes(jv_copy(dumped))) == NULL);
	jv back = jv_parse_sized(jv_string_value(dumped), jv_string_length_bytes(jv_copy(dumped)));
	CHECK(jv_get_kind(back) == JV_KIND_OBJECT);
	jv_free(back);
	jv_free(dumped);
}

static void check_sorted(jv rows /* not consumed */, int n_in)
{
	int n = jv_array_length(jv_copy(rows));
	CHECK(n == n_in);
	struct row_key prev = { .has_at = false, .seq = -1 };
	for (int i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		struct row_key cur = rows_key(row);
		jv_free(row);
		if (i > 0)
			CHECK(rows_key_cmp(&prev, &cur) <= 0);
		prev = cur;
	}
}

static int count_state(struct inbox *ib, enum msg_state st)
{
	int n = 0;
	for (struct message *m = inbox_first(ib); m; m = inbox_next(ib, m))
		n += m->state == st;
	return n;
}

static void check_state(jv st /* consumed */)
{
	CHECK(jv_get_kind(st) == JV_KIND_OBJECT);
	jv cur = jv_object_get(jv_copy(st), jv_string("last_since_id"));
	CHECK(jv_get_kind(cur) == JV_KIND_STRING);
	CHECK(jv_string_length_bytes(jv_copy(cur)) == 0 || uuid_valid(jv_string_value(cur)));
	jv_free(cur);
	jv done = jv_object_get(jv_copy(st), jv_string("done_ids"));
	CHECK(jv_get_kind(done) == JV_KIND_ARRAY);
	jv_array_foreach(done, i, id) {
		CHECK(jv_get_kind(id) == JV_KIND_STRING && uuid_valid(jv_string_value(id)));
		jv_free(id);
	}
	jv_free(done);
	jv replies = jv_object_get(jv_copy(st), jv_string("replies"));
	CHECK(jv_get_kind(replies) == JV_KIND_ARRAY);
	jv_array_foreach(replies, i, r) {
		jv body = jv_object_get(jv_copy(r), jv_string("body"));
		CHECK(jv_get_kind(body) == JV_KIND_OBJECT);
		jv_free(body);
		jv_free(r);
	}
	jv_free(replies);
	jv_free(st);
}

static jv fresh_state(void)
{
	jv st = jv_object();
	st = jv_object_set(st, jv_string("workspace_id"), jv_string(own_id));
	st = jv_object_set(st, jv_string("last_since_id"), jv_string(""));
	st = jv_object_set(st, jv_string("done_ids"), jv_array());
	st = jv_object_set(st, jv_string("replies"), jv_array());
	return st;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_init(-1, false);
	jq16_init();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* http.c hands over the body NUL-terminated. */
	char *body = xmalloc(size + 1);
	memcpy(body, data, size);
	body[size] = '\0';
	if (jq16_parse_leaks(body, size)) {
		free(body);
		return 0;
	}
	jv rows = rows_parse(body, size);
	free(body);
	if (!jv_is_valid(rows)) {
		jv msg = jv_invalid_get_msg(rows);
		CHECK(jv_get_kind(msg) == JV_KIND_STRING);
		jv_free(msg);
		return 0;
	}
	CHECK(jv_get_kind(rows) == JV_KIND_ARRAY);
	int n = jv_array_length(jv_copy(rows));

	/* A cold start: newest first by contract, sorted before anything. */
	jv sorted = rows_sort(rows);
	check_sorted(sorted, n);

	/* Every row as it would be written on stdout. */
	jv_array_foreach(sorted, i, row) {
		jv line = rows_message(row, own_id);
		if (jv_is_valid(line)) {
			check_line(line);
		} else {
			jv msg = jv_invalid_get_msg(line);
			CHECK(jv_get_kind(msg) == JV_KIND_STRING);
			jv_free(msg);
		}
	}

	jv st = fresh_state();
	struct inbox *ib = inbox_new(own_id, st);
	jv_free(st);
	int queued = inbox_add_rows(ib, jv_copy(sorted));
	CHECK(queued >= 0 && queued <= n);
	CHECK(count_state(ib, MSG_QUEUED) == queued);
	CHECK(inbox_unfinished(ib) >= queued);
	CHECK(inbox_cursor(ib)[0] == '\0' || uuid_valid(inbox_cursor(ib)));

	/* Hand out, then answer, ack, put back or leave open, in turn. */
	int64_t now = 1000;
	int k = 0;
	struct message *m;
	while ((m = inbox_next_queued(ib, now)) != NULL) {
		CHECK(jv_get_kind(m->line) == JV_KIND_OBJECT);
		inbox_open(ib, m, now);
		CHECK(inbox_oldest_open(ib) != NULL);
		CHECK(inbox_find(ib, m->id) == m);
		switch (k++ % 4) {
		case 0: {
			jv parts = jv_object_get(jv_copy(m->line), jv_string("parts"));
			if (jv_array_length(jv_copy(parts)) == 0) {
				jv_free(parts);
				parts = jv_array_append(jv_array(), jv_object_set(jv_object_set(jv_object(),
					jv_string("kind"), jv_string("text")), jv_string("text"), jv_string("ok")));
			}
			char *path, *body;
			if (m->source_id) {
				path = xasprintf("/workspaces/%s/a2a", m->source_id);
				body = platform_a2a_body(parts, m->context_id, NULL, "6a1b2c3d-4e5f-5a6b-8c7d-9e0f1a2b3c4d");
			} else {
				path = xasprintf("/workspaces/%s/notify", own_id);
				body = platform_notify_body(parts);
			}
			inbox_answer(ib, m, path, body);
			break;
		}
		case 1:
			inbox_done(ib, m);
			break;
		case 2:
			inbox_requeue(ib, m, now + 1000000);
			break;
		default:
			break;
		}
	}
	CHECK(inbox_open_count(ib) >= 0);
	check_state(inbox_state(ib, jv_object()));

	/* A 410, then the same page again by time: nothing is queued twice. */
	inbox_reseed(ib);
	CHECK(inbox_fetch_cursor(ib)[0] == '\0');
	int again = inbox_add_rows(ib, sorted);
	CHECK(again == 0);
	CHECK(inbox_next_due(ib, now) >= -1);
	inbox_caught_up(ib);
	check_state(inbox_state(ib, jv_object()));

	/* The handler died: open messages go back, then everything is acked. */
	inbox_requeue_open(ib);
	while ((m = inbox_next_queued(ib, INT64_MAX)) != NULL) {
		inbox_open(ib, m, now);
		inbox_done(ib, m);
	}
	/* Replies posted (inbox_done may free any message: look again each time). */
	for (;;) {
		for (m = inbox_first(ib); m && (m->orphan || m->state != MSG_ANSWERED); m = inbox_next(ib, m))
			;
		if (!m)
			break;
		inbox_done(ib, m);
	}
	CHECK(inbox_first(ib) == NULL && inbox_unfinished(ib) == 0 && inbox_open_count(ib) == 0);
	check_state(inbox_state(ib, jv_object()));
	inbox_free(ib);
	return 0;
}
