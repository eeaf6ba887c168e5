/* test_outbox.c: the order replies are posted in: the first unfinished reply per peer, the canvas as one peer, kept replies first, peers in parallel. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "tap.h"
#include "http.h"
#include "inbox.h"
#include "log.h"
#include "outbox.h"
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

static void test_order_per_peer(void)
{
	jv st = jv_parse("{\"workspace_id\":\"" OWN "\",\"last_since_id\":\"\",\"done_ids\":[],\"replies\":[]}");
	struct inbox *ib = inbox_new(OWN, st);
	jv_free(st);
	struct http *h = idle_client();
	struct outbox *ob = outbox_new(ib, h, NULL, NULL);

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

	outbox_free(ob);
	http_free(h);
	inbox_free(ib);
}

static void test_kept_replies_first(void)
{
	/* Replies read before a restart and not posted: one to A, one to the canvas. */
	char *text = xasprintf("{\"workspace_id\":\"" OWN "\",\"last_since_id\":\"\",\"done_ids\":[],\"replies\":["
			       "{\"id\":\"%s\",\"path\":\"/workspaces/" PEER_A "/a2a\",\"body\":{\"k\":1}},"
			       "{\"id\":\"%s\",\"path\":\"/workspaces/" OWN "/notify\",\"body\":{\"k\":2}}]}",
			       row_id(10), row_id(11));
	jv st = jv_parse(text);
	free(text);
	struct inbox *ib = inbox_new(OWN, st);
	jv_free(st);
	struct http *h = idle_client();
	struct outbox *ob = outbox_new(ib, h, NULL, NULL);

	struct message *kept[2];
	kept[0] = inbox_first(ib);
	kept[1] = kept[0] ? inbox_next(ib, kept[0]) : NULL;
	ok(kept[0] && kept[1] && kept[0]->orphan && kept[1]->orphan, "two kept replies come first in the walk");
	is_int(outbox_unposted(ob), 2, "kept replies count as unposted");

	jv rows = jv_array();
	rows = jv_array_append(rows, row(row_id(0), PEER_A));
	rows = jv_array_append(rows, row(row_id(1), PEER_B));
	rows = jv_array_append(rows, row(row_id(2), NULL));
	inbox_add_rows(ib, rows);
	struct message *m[3];
	is_int(open_all(ib, m), 3, "three new messages handed out");
	for (int i = 0; i < 3; i++)
		answer(ib, m[i]);
	repump(ob);
	states_are(kept, 2, "posting,posting", "both kept replies post at once");
	states_are(m, 3, "answered,posting,answered",
		   "A's new reply waits for A's kept one, the canvas's for the canvas's; B is free");

	inbox_orphan_done(ib, kept[0]);
	repump(ob);
	states_are(m, 3, "posting,posting,answered", "A's kept reply settled: A's new one posts");

	outbox_free(ob);
	http_free(h);
	inbox_free(ib);
}

int main(void)
{
	log_init(-1, false);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	test_order_per_peer();
	test_kept_replies_first();
	curl_global_cleanup();
	return done_testing();
}
