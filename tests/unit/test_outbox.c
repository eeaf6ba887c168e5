/* test_outbox.c: the order posts go in (the first unfinished reply per peer, the canvas as one peer, kept replies in their messages' places, new messages after the replies read before them), and the outbox bound. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "tap.h"
#include "http.h"
#include "inbox.h"
#include "log.h"
#include "outbox.h"
#include "parts.h"
#include "util.h"

#define OWN    "00000000-0000-4000-8000-000000000000"
#define PEER_A "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
#define PEER_B "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"

static jv row(const char *id, const char *source)
{
	jv r = jv_object();
	r = jv_object_set(r, jv_string("id"), jv_string(id));
	r = jv_object_set(r, jv_string("source_id"), source ? jv_string(source) : jv_null());
	r = jv_object_set(r, jv_string("method"), jv_string("message/send"));
	r = jv_object_set(r, jv_string("request_body"),
		jv_parse("{\"params\":{\"message\":{\"parts\":[{\"kind\":\"text\",\"text\":\"hi\"}]}}}"));
	return r;
}

static const char *row_id(int i)
{
	static char ids[16][UUID_LEN + 1];
	snprintf(ids[i], sizeof ids[i], "cccccccc-0000-4000-8000-%012d", i);
	return ids[i];
}

/* Opens every queued message, oldest first; returns them in that order. */
static int open_all(struct inbox *ib, struct message **out)
{
	int n = 0;
	struct message *m;
	while ((m = inbox_next_queued(ib, 0))) {
		inbox_open(ib, m, 0);
		out[n++] = m;
	}
	return n;
}

static void answer(struct inbox *ib, struct message *m)
{
	char *path = m->source_id ? xasprintf("/workspaces/%s/a2a", m->source_id) : xasprintf("/workspaces/%s/notify", OWN);
	inbox_answer(ib, m, path, xstrdup("{\"message\":\"ok\"}"));
}

static const char *state_name(const struct message *m)
{
	static const char *names[] = { "queued", "open", "answered", "posting", "done" };
	return names[m->state];
}

/* The states of ms[0..n) joined with ',': which replies were started shows as "posting". */
static char *states(struct message **ms, int n)
{
	struct buf b = { 0 };
	buf_append(&b, "", 0);
	for (int i = 0; i < n; i++) {
		if (i)
			buf_append(&b, ",", 1);
		buf_append(&b, state_name(ms[i]), strlen(state_name(ms[i])));
	}
	return b.p;
}

static void states_are(struct message **ms, int n, const char *want, const char *name)
{
	char *got = states(ms, n);
	is_str(got, want, name);
	free(got);
}

/* Something changed in the inbox: the outbox looks again. */
static void repump(struct outbox *ob)
{
	outbox_touch(ob);
	outbox_pump(ob);
}

/* A real client whose requests never run: nothing calls http_process, so
 * a started post stays in flight and its message shows MSG_POSTING. */
static struct http *idle_client(void)
{
	return http_new("http://127.0.0.1:9", OWN, NULL);
}

static struct inbox *empty_inbox(void)
{
	jv st = jv_parse("{\"workspace_id\":\"" OWN "\",\"last_since_id\":\"\",\"done_ids\":[],\"replies\":[]}");
	struct inbox *ib = inbox_new(OWN, st);
	jv_free(st);
	return ib;
}

/* An inbox, an idle client and the outbox over them. */
struct fixture {
	struct inbox *ib;
	struct http *h;
	struct outbox *ob;
};

static struct fixture fixture_new(struct inbox *ib)
{
	struct fixture f = { .ib = ib, .h = idle_client() };
	f.ob = outbox_new(ib, f.h, NULL, NULL);
	return f;
}

static void fixture_free(struct fixture *f)
{
	outbox_free(f->ob);
	http_free(f->h);
	inbox_free(f->ib);
}

static void test_order_per_peer(void)
{
	struct fixture f = fixture_new(empty_inbox());
	struct inbox *ib = f.ib;
	struct outbox *ob = f.ob;

	/* A1 B1 A2 C1 C2 B2 (C: the canvas). */
	jv rows = jv_array();
	const char *from[] = { PEER_A, PEER_B, PEER_A, NULL, NULL, PEER_B };
	for (int i = 0; i < 6; i++)
		rows = jv_array_append(rows, row(row_id(i), from[i]));
	is_int(inbox_add_rows(ib, rows), 6, "six messages queued");
	struct message *m[6];
	is_int(open_all(ib, m), 6, "all handed out");

	outbox_pump(ob);
	states_are(m, 6, "open,open,open,open,open,open", "nothing answered: nothing posted");

	/* Later replies answered first: each waits for the peer's earlier message. */
	answer(ib, m[1]); /* B1 */
	answer(ib, m[2]); /* A2 */
	answer(ib, m[4]); /* C2 */
	answer(ib, m[5]); /* B2 */
	repump(ob);
	states_are(m, 6, "open,posting,answered,open,answered,answered",
		   "B1 posts; A2 waits for A1, C2 for C1, B2 for B1 in flight");
	is_int(outbox_unposted(ob), 4, "four replies unposted (one in flight)");

	outbox_pump(ob);
	states_are(m, 6, "open,posting,answered,open,answered,answered", "a pump with nothing changed starts nothing");

	answer(ib, m[0]); /* A1 */
	answer(ib, m[3]); /* C1 */
	repump(ob);
	states_are(m, 6, "posting,posting,answered,posting,answered,answered",
		   "A1 and the canvas's C1 post in parallel with B1; the second of each still waits");

	/* B1 settles (what on_posted does): B2's turn. */
	inbox_done(ib, m[1]);
	repump(ob);
	states_are(m, 6, "posting,done,answered,posting,answered,posting", "B1 done: B2 posts, A2 and C2 still wait");

	inbox_done(ib, m[3]);
	repump(ob);
	ok(m[4]->state == MSG_POSTING && m[2]->state == MSG_ANSWERED, "C1 done: C2 posts; A2 waits for A1 alone");

	fixture_free(&f);
}

/* An inbox whose state file kept replies to rows 10 (to A) and 11 (to the canvas). */
static struct inbox *inbox_with_kept(void)
{
	char *text = xasprintf("{\"workspace_id\":\"" OWN "\",\"last_since_id\":\"\",\"done_ids\":[],\"replies\":["
			       "{\"id\":\"%s\",\"path\":\"/workspaces/" PEER_A "/a2a\",\"body\":{\"k\":1}},"
			       "{\"id\":\"%s\",\"path\":\"/workspaces/" OWN "/notify\",\"body\":{\"k\":2}}]}",
			       row_id(10), row_id(11));
	jv st = jv_parse(text);
	free(text);
	struct inbox *ib = inbox_new(OWN, st);
	jv_free(st);
	return ib;
}

static void test_kept_replies_in_message_order(void)
{
	struct fixture f = fixture_new(inbox_with_kept());
	struct inbox *ib = f.ib;
	struct outbox *ob = f.ob;

	outbox_pump(ob);
	struct message *kept = inbox_first(ib);
	ok(kept && kept->orphan && kept->state == MSG_ANSWERED, "a kept reply waits while its row has not come back");
	is_int(outbox_unposted(ob), 0, "kept replies waiting for their rows are not counted as posts of this run");

	/* After the restart: A's message 9, unanswered before it, comes again
	 * before message 10, whose reply was kept; then the canvas's 11. */
	jv rows = jv_array();
	rows = jv_array_append(rows, row(row_id(9), PEER_A));
	rows = jv_array_append(rows, row(row_id(10), PEER_A));
	rows = jv_array_append(rows, row(row_id(11), NULL));
	is_int(inbox_add_rows(ib, rows), 1, "only message 9 is queued: 10 and 11 have their replies");
	repump(ob);
	struct message *m9 = inbox_find(ib, row_id(9)), *m10 = inbox_find(ib, row_id(10)), *m11 = inbox_find(ib, row_id(11));
	ok(inbox_first(ib) == inbox_find(ib, row_id(9)), "the kept replies took their messages' places in the list");
	ok(m10->state == MSG_ANSWERED && m10->post_body && strcmp(m10->post_body, "{\"k\":1}") == 0,
	   "message 10 holds its kept reply, waiting behind message 9 of the same peer");
	ok(m11->state == MSG_POSTING, "the canvas's kept reply posts: nothing of the canvas comes before it");
	is_int(inbox_handed_count(ib), 0, "kept replies do not count as handed out");

	struct message *m[1];
	is_int(open_all(ib, m), 1, "message 9 handed out again");
	answer(ib, m9);
	repump(ob);
	ok(m9->state == MSG_POSTING && m10->state == MSG_ANSWERED, "the reply to 9 goes first");
	inbox_done(ib, m9);
	repump(ob);
	ok(m10->state == MSG_POSTING, "then the kept reply to 10");

	fixture_free(&f);
}

static void test_kept_replies_without_rows(void)
{
	struct fixture f = fixture_new(inbox_with_kept());
	struct inbox *ib = f.ib;
	struct outbox *ob = f.ob;

	/* Rows 10 and 11 never come back (pruned, or below the cursor). */
	jv rows = jv_array();
	rows = jv_array_append(rows, row(row_id(0), PEER_B));
	inbox_add_rows(ib, rows);
	struct message *m[1];
	open_all(ib, m);
	answer(ib, m[0]);
	repump(ob);
	struct message *kept[2];
	kept[0] = inbox_first(ib);
	kept[1] = inbox_next(ib, kept[0]);
	states_are(kept, 2, "answered,answered", "kept replies wait until the fetch has caught up");
	ok(m[0]->state == MSG_POSTING, "a new reply does not wait for them");

	inbox_fetch_complete(ib);
	ok(inbox_kept_released(ib), "the fetch reached the newest row");
	repump(ob);
	states_are(kept, 2, "posting,posting", "kept replies whose rows did not come back are posted then");
	is_int(outbox_unposted(ob), 3, "and counted");

	fixture_free(&f);
}

static struct message *outbound(struct outbox *ob, const char *to, const char *text)
{
	char *err = NULL;
	jv parts = jv_array_append(jv_array(), parts_text_part(text));
	struct message *m = outbox_new_message(ob, OWN, to, parts, NULL, &err);
	free(err);
	return m;
}

static void test_new_messages(void)
{
	struct fixture f = fixture_new(empty_inbox());
	struct inbox *ib = f.ib;
	struct outbox *ob = f.ob;

	/* A0 A1 from peer A; A1 is answered first and waits for A0. */
	jv rows = jv_array();
	rows = jv_array_append(rows, row(row_id(0), PEER_A));
	rows = jv_array_append(rows, row(row_id(1), PEER_A));
	inbox_add_rows(ib, rows);
	struct message *m[2];
	open_all(ib, m);
	answer(ib, m[1]);

	struct message *toA = outbound(ob, PEER_A, "news for A");
	struct message *toA2 = outbound(ob, PEER_A, "more news for A");
	struct message *toC = outbound(ob, NULL, "news for the canvas");
	ok(toA && toA->outbound && toA->orphan && toA->state == MSG_ANSWERED, "a new message is kept like a reply");
	ok(uuid_valid(toA->id) && strstr(toA->post_body, toA->id) && !strstr(toA->post_body, "in_reply_to"),
	   "its messageId is its own fresh id, and it answers nothing");
	ok(strcmp(toA->post_path, "/workspaces/" PEER_A "/a2a") == 0, "to a peer: its /a2a");
	ok(toC && strcmp(toC->post_path, "/workspaces/" OWN "/notify") == 0 && !toC->source_id, "to the canvas: /notify");
	repump(ob);
	struct message *out[3] = { toA, toA2, toC };
	states_are(out, 3, "answered,answered,posting",
		   "the message to A waits for the reply to A read before it; the canvas's goes");
	states_are(m, 2, "open,answered", "that reply still waits for A0");

	answer(ib, m[0]);
	repump(ob);
	states_are(m, 2, "posting,answered", "A0's reply, read after the new message, still goes: the new one waits for A1's");
	inbox_done(ib, m[0]); /* (A0 leaves the list: the cursor passes it) */
	repump(ob);
	ok(m[1]->state == MSG_POSTING, "A1's reply goes");
	ok(toA->state == MSG_ANSWERED, "the new message waits for it");
	inbox_done(ib, m[1]);
	repump(ob);
	states_are(out, 2, "posting,answered", "then the first new message to A; the second waits for it");

	/* A reply read now, after the new message that may go, waits for it. */
	rows = jv_array_append(jv_array(), row(row_id(2), PEER_A));
	inbox_add_rows(ib, rows);
	struct message *m2[1];
	open_all(ib, m2);
	answer(ib, m2[0]);
	repump(ob);
	ok(m2[0]->state == MSG_ANSWERED, "a reply read after a new message to the same peer waits for it");
	inbox_orphan_done(ib, toA);
	repump(ob);
	ok(toA2->state == MSG_POSTING, "the second new message to A goes");

	char *err = NULL;
	ok(!outbox_new_message(ob, OWN, OWN, jv_array_append(jv_array(), parts_text_part("x")), NULL, &err) && err &&
	   strstr(err, "own id"), "a message to the own workspace is refused");
	free(err);

	fixture_free(&f);
}

static void test_bound_and_window(void)
{
	struct fixture f = fixture_new(empty_inbox());
	struct inbox *ib = f.ib;
	struct outbox *ob = f.ob;

	jv rows = jv_array();
	for (int i = 0; i < 4; i++)
		rows = jv_array_append(rows, row(row_id(i), PEER_A));
	inbox_add_rows(ib, rows);
	is_int(inbox_unfinished(ib), 4, "the fetch window counts queued messages");
	struct message *m[4];
	open_all(ib, m);
	is_int(inbox_handed_count(ib), 4, "four handed out");
	answer(ib, m[0]);
	answer(ib, m[1]);
	repump(ob);
	is_int(inbox_handed_count(ib), 2, "answered messages leave the hand-out window");
	is_int(inbox_unfinished(ib), 2, "and the fetch window, while their replies wait to be posted");
	is_int(inbox_open_count(ib), 4, "they are still active (the heartbeat's active tasks)");
	inbox_requeue(ib, m[3], 0);
	is_int(inbox_unfinished(ib), 2, "a message handed out again still counts once");
	is_int(inbox_handed_count(ib), 1, "as queued");

	ok(!outbox_full(ob), "two replies do not fill the outbox");
	for (int i = 0; i < OUTBOX_MAX_MESSAGES; i++)
		outbound(ob, PEER_B, "x");
	repump(ob);
	ok(outbox_full(ob), "OUTBOX_MAX_MESSAGES waiting fill it");
	fixture_free(&f);

	f = fixture_new(empty_inbox());
	ib = f.ib;
	ob = f.ob;
	size_t big = 1u << 20;
	int n = 0;
	while ((long)(n * big) < OUTBOX_MAX_BYTES) {
		char *body = xmalloc(big + 1);
		memset(body, 'x', big);
		body[big] = '\0';
		char id[UUID_LEN + 1];
		uuid_new(id);
		inbox_add_outbound(ib, id, PEER_B, xasprintf("/workspaces/%s/a2a", PEER_B), body);
		n++;
		repump(ob);
		if (outbox_full(ob))
			break;
	}
	is_int(n, OUTBOX_MAX_BYTES / (long)big, "OUTBOX_MAX_BYTES of bodies fill it, however few they are");

	fixture_free(&f);
}

int main(void)
{
	log_init(-1, false);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	test_order_per_peer();
	test_kept_replies_in_message_order();
	test_kept_replies_without_rows();
	test_new_messages();
	test_bound_and_window();
	curl_global_cleanup();
	return done_testing();
}
