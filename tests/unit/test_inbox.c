/* test_inbox.c: the inbox: order, window, done set, cursor, kept replies. */
#include <stdlib.h>
#include <string.h>
#include "tap.h"
#include "inbox.h"
#include "log.h"
#include "platform.h"
#include "http.h"

#define OWN "00000000-0000-4000-8000-000000000000"
#define PEER "11111111-1111-4111-8111-111111111111"

static const char *ids[] = {
	"aaaaaaaa-0000-4000-8000-000000000001", "aaaaaaaa-0000-4000-8000-000000000002",
	"aaaaaaaa-0000-4000-8000-000000000003", "aaaaaaaa-0000-4000-8000-000000000004",
	"aaaaaaaa-0000-4000-8000-000000000005",
};

static jv row(const char *id, const char *source, const char *method)
{
	jv r = jv_object();
	r = jv_object_set(r, jv_string("id"), jv_string(id));
	r = jv_object_set(r, jv_string("source_id"), source ? jv_string(source) : jv_null());
	r = jv_object_set(r, jv_string("method"), jv_string(method));
	r = jv_object_set(r, jv_string("created_at"), jv_string("2026-04-30T10:15:02.123456Z"));
	r = jv_object_set(r, jv_string("request_body"),
		jv_parse("{\"params\":{\"message\":{\"contextId\":\"c1\",\"taskId\":\"t1\",\"parts\":[{\"kind\":\"text\",\"text\":\"hi\"}]}}}"));
	return r;
}

static jv rows(int from, int to)
{
	jv a = jv_array();
	for (int i = from; i < to; i++)
		a = jv_array_append(a, row(ids[i], PEER, "message/send"));
	return a;
}

static jv fresh(void)
{
	return jv_parse("{\"workspace_id\":\"" OWN "\",\"last_since_id\":\"\",\"done_ids\":[],\"replies\":[]}");
}

static void formats(struct ts t, char *out)
{
	char tmp[TS_TEXT_MAX];
	ts_format(t, tmp);
	strcpy(out, tmp);
}

static const char *str(jv st, const char *key, char *buf, size_t n)
{
	jv v = jv_object_get(jv_copy(st), jv_string(key));
	jv d = jv_get_kind(v) == JV_KIND_STRING ? v : jv_dump_string(v, 0);
	snprintf(buf, n, "%s", jv_string_value(d));
	jv_free(d);
	return buf;
}

/* A row of the platform version 2: seq and a time of its own. */
static jv row2(const char *id, int seq, const char *at, const char *source, const char *method)
{
	jv r = row(id, source, method);
	r = jv_object_set(r, jv_string("seq"), jv_number(seq));
	return jv_object_set(r, jv_string("created_at"), jv_string(at));
}

static const char *v2ids[] = {
	"dddddddd-0000-4000-8000-000000000001", "dddddddd-0000-4000-8000-000000000002",
	"dddddddd-0000-4000-8000-000000000003", "dddddddd-0000-4000-8000-000000000004",
	"dddddddd-0000-4000-8000-000000000005", "dddddddd-0000-4000-8000-000000000006",
};

static void hand_out_and_ack(struct inbox *ib, int n)
{
	for (int i = 0; i < n; i++) {
		struct message *m = inbox_next_queued(ib, 0);
		if (!m)
			return;
		inbox_open(ib, m, 0);
		inbox_done(ib, m);
	}
}

static void test_v2(void)
{
	char b1[512];
	jv st = fresh();
	struct inbox *ib = inbox_new(OWN, st);
	struct ts anchor;
	ok(!inbox_replay_anchor(ib, &anchor), "a first start has no anchor");
	struct ts from;
	ts_parse("2026-04-30T10:00:00Z", &from);
	inbox_set_replay_from(ib, from);
	ok(inbox_replay_anchor(ib, &anchor) && ts_cmp(anchor, from) == 0, "the first start's window is the anchor");
	ok(inbox_dirty(ib), "and it is to be saved");
	st = inbox_state(ib, st);
	is_str(str(st, "replay_from", b1, sizeof b1), "2026-04-30T10:00:00Z", "saved as replay_from");
	is_int(inbox_saved(ib), -1, "nothing done: nothing to acknowledge");
	inbox_free(ib);

	/* A restart that still has no cursor reads back to it. */
	ib = inbox_new(OWN, st);
	ok(inbox_replay_anchor(ib, &anchor) && ts_cmp(anchor, from) == 0, "the anchor survives a restart");

	/* What each row is: only messages are queued; the cursor passes the rest. */
	jv rows = jv_array();
	rows = jv_array_append(rows, row2(v2ids[0], 10, "2026-04-30T10:01:00Z", PEER, "message/send"));
	rows = jv_array_append(rows, row2(v2ids[1], 11, "2026-04-30T10:01:00Z", PEER, "delegate_result"));
	rows = jv_array_append(rows, row2(v2ids[2], 12, "2026-04-30T10:01:00Z", OWN, "message/send"));
	rows = jv_array_append(rows, row2(v2ids[3], 13, "2026-04-30T10:01:01Z", PEER, "tasks/get"));
	rows = jv_array_append(rows, row2(v2ids[4], 14, "2026-04-30T10:01:02Z", NULL, "chat_upload_receive"));
	rows = jv_array_append(rows, row2(v2ids[5], 15, "2026-04-30T10:01:03Z", PEER, "message/send"));
	is_int(inbox_add_rows(ib, rows), 3, "two messages and an upload queued");
	is_int(inbox_uploads_waiting(ib), 1, "the upload waits for its file");
	struct message *m = inbox_next_queued(ib, 0);
	ok(m && strcmp(m->id, v2ids[0]) == 0, "the first message");
	is_str(m->task_id, "t1", "the request's task id kept in memory");
	inbox_open(ib, m, 0);
	inbox_done(ib, m);
	is_str(inbox_cursor(ib), v2ids[3], "the cursor passes own traffic and what cannot be served");
	m = inbox_next_queued(ib, 0);
	ok(m && strcmp(m->id, v2ids[5]) == 0, "the upload is passed over while its file is not there");
	inbox_open(ib, m, 0);
	inbox_done(ib, m);
	is_int(inbox_done_count(ib), 2, "two handed out and done");
	is_str(inbox_cursor(ib), v2ids[3], "the cursor waits for the upload");
	struct message *up = inbox_find(ib, v2ids[4]);
	inbox_upload_ready(ib, up);
	is_int(inbox_uploads_waiting(ib), 0, "the file is there");
	ok(inbox_next_queued(ib, 0) == up, "then the upload is handed out");

	/* The last done row, and the seq to acknowledge. */
	st = inbox_state(ib, st);
	is_str(str(st, "done_at", b1, sizeof b1), "2026-04-30T10:01:01Z", "done_at: the cursor row's time");
	is_str(str(st, "done_seq", b1, sizeof b1), "13", "done_seq: the cursor row's seq");
	ok(!jv_object_has(jv_copy(st), jv_string("replay_from")), "replay_from gone once a row is done");
	is_int(inbox_saved(ib), 13, "acknowledged up to the cursor row");
	inbox_open(ib, up, 0);
	inbox_done(ib, up);
	is_int(inbox_done_count(ib), 3, "three done");
	st = inbox_state(ib, st);
	is_int(inbox_saved(ib), 15, "all done: up to the last row");
	inbox_free(ib);

	/* A row that committed late (a lower seq after the cursor) holds the ack back. */
	jv st2 = fresh();
	ib = inbox_new(OWN, st2);
	rows = jv_array();
	rows = jv_array_append(rows, row2(v2ids[0], 20, "2026-04-30T10:02:00Z", PEER, "message/send"));
	rows = jv_array_append(rows, row2(v2ids[1], 18, "2026-04-30T10:02:01Z", PEER, "message/send"));
	rows = jv_array_append(rows, row2(v2ids[2], 22, "2026-04-30T10:02:02Z", PEER, "message/send"));
	inbox_add_rows(ib, rows);
	hand_out_and_ack(ib, 1);
	st2 = inbox_state(ib, st2);
	is_int(inbox_saved(ib), 17, "below the undone row with seq 18");
	inbox_free(ib);
	jv_free(st2);

	/* A restart whose cursor is gone (410): rows up to the last done one, and
	 * done ids, are not handed out again. */
	st = jv_object_set(st, jv_string("last_since_id"), jv_string(""));
	st = jv_object_set(st, jv_string("done_seq"), jv_number(13));
	st = jv_object_set(st, jv_string("done_at"), jv_string("2026-04-30T10:01:01Z"));
	st = jv_object_set(st, jv_string("done_ids"), jv_parse("[\"dddddddd-0000-4000-8000-000000000006\"]"));
	ib = inbox_new(OWN, st);
	ok(inbox_replay_anchor(ib, &anchor), "a restart after a 410 has an anchor");
	formats(anchor, b1);
	is_str(b1, "2026-04-30T09:51:01Z", "ten minutes before the last done row");
	struct row_key floor;
	ok(inbox_floor(ib, &floor) && floor.seq == 13, "the floor is the last done row");
	rows = jv_array();
	rows = jv_array_append(rows, row2(v2ids[0], 10, "2026-04-30T10:01:00Z", PEER, "message/send"));
	rows = jv_array_append(rows, row2(v2ids[3], 13, "2026-04-30T10:01:01Z", PEER, "message/send"));
	rows = jv_array_append(rows, row2(v2ids[4], 14, "2026-04-30T10:01:01Z", PEER, "message/send"));
	rows = jv_array_append(rows, row2(v2ids[5], 15, "2026-04-30T10:01:03Z", PEER, "message/send"));
	is_int(inbox_add_rows(ib, rows), 1, "only the row after the last done one, not done since, is new");
	m = inbox_next_queued(ib, 0);
	ok(m && strcmp(m->id, v2ids[4]) == 0, "the same time with a higher seq is not done");
	inbox_free(ib);
	jv_free(st);
}

/* The run's tally: each message counted once, whatever became of it. */
static void test_tally(void)
{
	jv st = fresh();
	struct inbox *ib = inbox_new(OWN, st);
	jv_free(st);
	is_int(inbox_add_rows(ib, rows(0, 5)), 5, "five rows queued");
	struct message *m[5];
	for (int i = 0; i < 4; i++) {
		m[i] = inbox_next_queued(ib, 0);
		inbox_open(ib, m[i], 0);
	}
	struct inbox_tally t = inbox_tally(ib);
	ok(t.handed_out == 4 && t.answered == 0 && t.kept == 4 && t.failed == 0, "four handed out, all kept so far");
	inbox_requeue(ib, m[3], 0);
	ok(inbox_next_queued(ib, 0) == m[3], "one put back to be handed out again");
	inbox_open(ib, m[3], 0);
	is_int(inbox_tally(ib).handed_out, 4, "handed out again: still counted once");
	inbox_answer(ib, m[0], strdup("/p"), strdup("{}"));
	inbox_done(ib, m[0]);
	inbox_done(ib, m[1]);
	inbox_answer(ib, m[2], strdup("/p"), strdup("{}"));
	inbox_failed(ib, m[2]);
	inbox_answer(ib, m[3], strdup("/p"), strdup("{}"));
	t = inbox_tally(ib);
	ok(t.handed_out == 4 && t.answered == 2 && t.kept == 1 && t.failed == 1,
	   "posted and acknowledged answered, refused failed, a reply not posted kept (%ld %ld %ld %ld)", t.handed_out,
	   t.answered, t.kept, t.failed);
	is_int(inbox_queued_count(ib), 1, "the fifth still waits");
	inbox_free(ib);
}

int main(void)
{
	char b1[512];
	log_init(-1, false);

	jv st = fresh();
	struct inbox *ib = inbox_new(OWN, st);
	is_int(inbox_add_rows(ib, rows(0, 3)), 3, "three rows queued");
	struct message *m1 = inbox_next_queued(ib, 0);
	ok(m1 && strcmp(m1->id, ids[0]) == 0, "oldest first");
	is_str(m1->source_id, PEER, "source id kept");
	is_str(m1->context_id, "c1", "context id kept");
	is_str(m1->summary, "hi", "summary from the text");
	inbox_open(ib, m1, 1);
	struct message *m2 = inbox_next_queued(ib, 0);
	inbox_open(ib, m2, 1);
	struct message *m3 = inbox_next_queued(ib, 0);
	inbox_open(ib, m3, 1);
	is_int(inbox_open_count(ib), 3, "three open");
	ok(inbox_next_queued(ib, 0) == NULL, "nothing more queued");
	ok(inbox_oldest_open(ib) == m1, "oldest open is the first");

	/* Done out of order: the cursor stays, the id is remembered. */
	inbox_done(ib, m2);
	is_str(inbox_cursor(ib), "", "cursor does not pass an open message");
	st = inbox_state(ib, st);
	is_str(str(st, "done_ids", b1, sizeof b1), "[\"aaaaaaaa-0000-4000-8000-000000000002\"]", "done above the cursor is saved");
	inbox_done(ib, m1);
	is_str(inbox_cursor(ib), ids[1], "cursor moves over the done prefix");
	is_int(inbox_unfinished(ib), 1, "one left in the window");
	st = inbox_state(ib, st);
	is_str(str(st, "done_ids", b1, sizeof b1), "[]", "nothing done above the cursor");
	is_str(str(st, "last_since_id", b1, sizeof b1), ids[1], "cursor saved");

	/* Answered but not posted: kept as a reply. */
	is_int(inbox_unsaved_replies(ib), 0, "no reply read yet");
	inbox_answer(ib, m3, xstrdup("/workspaces/" PEER "/a2a"), xstrdup("{\"x\":1}"));
	is_int(inbox_unsaved_replies(ib), 1, "a reply read is unsaved");
	st = inbox_state(ib, st);
	/* The state is built, but the file is not written yet (or its save fails):
	 * nothing counts as saved. */
	is_int(inbox_unsaved_replies(ib), 1, "built, not saved: the reply still counts as unsaved");
	ok(inbox_dirty(ib), "built, not saved: still dirty");
	st = inbox_state(ib, st);
	is_int(inbox_unsaved_replies(ib), 1, "a second attempt does not clear it either");
	is_int(inbox_saved(ib), -1, "saved: no seq to acknowledge (the rows have none)");
	is_int(inbox_unsaved_replies(ib), 0, "saved with the state");
	ok(!inbox_dirty(ib), "saved: clean");
	is_str(str(st, "replies", b1, sizeof b1),
	       "[{\"id\":\"aaaaaaaa-0000-4000-8000-000000000003\",\"path\":\"/workspaces/" PEER "/a2a\",\"body\":{\"x\":1}}]",
	       "unposted reply saved with its path and body");
	inbox_free(ib);

	/* A restart on that state: the kept reply becomes an orphan post, its row
	 * is not handed out again, and a done id is skipped. */
	st = jv_object_set(st, jv_string("done_ids"), jv_parse("[\"aaaaaaaa-0000-4000-8000-000000000004\"]"));
	ib = inbox_new(OWN, st);
	struct message *kept = inbox_first(ib);
	ok(kept && kept->orphan && strcmp(kept->id, ids[2]) == 0, "kept reply loaded");
	is_str(kept->source_id, PEER, "its peer taken from the path");
	is_int(inbox_add_rows(ib, rows(2, 5)), 1, "only the fifth is new");
	struct message *m = inbox_find(ib, ids[2]);
	ok(m && m->state == MSG_POSTING, "the answered row waits for its kept reply");
	m = inbox_next_queued(ib, 0);
	ok(m && strcmp(m->id, ids[4]) == 0, "the fifth is handed out");
	inbox_open(ib, m, 0);
	inbox_answer(ib, m, xstrdup("/workspaces/" PEER "/a2a"), xstrdup("{}"));
	inbox_done(ib, m);
	is_int(inbox_unsaved_replies(ib), 0, "a reply posted before a save needs none");
	is_str(inbox_cursor(ib), ids[1], "cursor held by the posting reply");
	inbox_orphan_done(ib, kept);
	is_str(inbox_cursor(ib), ids[4], "kept reply posted: cursor moves over all");
	is_int(inbox_unfinished(ib), 0, "window empty");

	/* Notify echoes are never handed out, and the cursor passes them. */
	jv r = jv_array_append(jv_array(), row("bbbbbbbb-0000-4000-8000-000000000001", NULL, "notify"));
	is_int(inbox_add_rows(ib, r), 0, "notify echo not queued");
	is_str(inbox_cursor(ib), "bbbbbbbb-0000-4000-8000-000000000001", "cursor passes the echo");

	/* Already seen (recent): a replay after a re-seed does not hand it out again. */
	inbox_reseed(ib);
	is_str(inbox_fetch_cursor(ib), "", "re-seed replays by time");
	is_int(inbox_add_rows(ib, rows(4, 5)), 0, "recently done row not handed out again");

	/* Bad rows are skipped and do not stop the others. */
	r = jv_parse("[{\"id\":\"../../etc\"},{\"id\":\"cccccccc-0000-4000-8000-000000000001\",\"source_id\":\"x/../y\"},7]");
	r = jv_array_append(r, row("cccccccc-0000-4000-8000-000000000002", NULL, "message/send"));
	is_int(inbox_add_rows(ib, r), 1, "only the good row is queued");
	m = inbox_next_queued(ib, 0);
	ok(m && m->source_id == NULL, "canvas message has no source");

	/* Retry: back in the queue, not before the given time. */
	inbox_open(ib, m, 0);
	inbox_requeue(ib, m, 5000);
	ok(inbox_next_queued(ib, 4999) == NULL, "not handed out before its time");
	ok(inbox_next_queued(ib, 5000) == m, "handed out again after");
	is_int(inbox_next_due(ib, 1000), 4000, "due time reported");
	inbox_free(ib);
	jv_free(st);

	test_v2();
	test_tally();

	/* Bodies. */
	char *hb = platform_heartbeat_body(OWN, &(struct heartbeat_info){ .uptime_seconds = 3, .active_tasks = 2, .error_rate = 0.5, .current_task = "x" });
	is_str(hb, "{\"uptime_seconds\":3,\"active_tasks\":2,\"error_rate\":0.5000,\"workspace_id\":\"" OWN "\",\"current_task\":\"x\",\"is_busy\":false}",
	       "heartbeat body: integers as integers, no runtime_state");
	free(hb);
	return done_testing();
}
