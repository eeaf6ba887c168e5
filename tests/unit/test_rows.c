/* test_rows.c: unit tests for activity rows: parsing, order, and rows to message lines. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <jv.h>

#include "tap.h"
#include "rows.h"
#include "util.h"

#define OWN  "22222222-2222-4222-8222-222222222222"
#define ROW  "11111111-1111-4111-8111-111111111111"
#define PEER "33333333-3333-4333-8333-333333333333"
#define TS   "2026-04-30T10:15:02.123456Z"

/* JSON written with single quotes, for readable C strings; caller frees. */
static char *q(const char *s)
{
	char *r = xstrdup(s);
	for (char *p = r; *p; p++)
		if (*p == '\'')
			*p = '"';
	return r;
}

static jv parse_q(const char *s)
{
	char *json = q(s);
	jv v = jv_parse(json);
	free(json);
	return v;
}

static char *dump(jv v /* consumed */)
{
	jv d = jv_dump_string(v, 0);
	char *s = xstrdup(jv_string_value(d));
	jv_free(d);
	return s;
}

/* rows_message on a row given in single-quote JSON; compares the compact
 * dump (key order included) with want, also in single-quote JSON. */
static void message_is(const char *row, const char *want, const char *name)
{
	jv m = rows_message(parse_q(row), OWN);
	char *w = q(want);
	if (!jv_is_valid(m)) {
		jv msg = jv_invalid_get_msg(m);
		ok(0, "%s (invalid: %s)", name,
			jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "no message");
		jv_free(msg);
	} else {
		char *got = dump(m);
		is_str(got, w, name);
		free(got);
	}
	free(w);
}

/* The row is rejected with a message containing want. */
static void message_invalid(jv row, const char *want, const char *name)
{
	jv m = rows_message(row, OWN);
	if (jv_is_valid(m)) {
		ok(0, "%s (accepted)", name);
		jv_free(m);
		return;
	}
	jv msg = jv_invalid_get_msg(m);
	bool pass = jv_get_kind(msg) == JV_KIND_STRING && strstr(jv_string_value(msg), want);
	ok(pass, "%s", name);
	if (!pass)
		printf("#   got:  %s\n#   want: ...%s...\n",
			jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : "(no message)", want);
	jv_free(msg);
}

static void test_rows_message(void)
{
	message_is(
		"{'id':'" ROW "','workspace_id':'" OWN "','activity_type':'a2a_receive','source_id':null,"
		"'target_id':'" OWN "','method':'message/send','summary':null,'duration_ms':null,'status':'ok',"
		"'error_detail':null,'created_at':'" TS "','request_body':{'jsonrpc':'2.0','id':'rpc-1',"
		"'method':'message/send','params':{'message':{'role':'user','messageId':'m-1','parts':"
		"[{'kind':'text','text':'hello'},{'kind':'text','text':'world'}]},'metadata':{'history':[]}}}}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':null,'origin':'canvas',"
		"'peer_name':null,'peer_role':null,'method':'message/send','text':'hello\\nworld',"
		"'parts':[{'kind':'text','text':'hello'},{'kind':'text','text':'world'}],'files':[],"
		"'message_id':'m-1','context_id':null,'delegation_id':null,'created_at':'" TS "',"
		"'request':{'jsonrpc':'2.0','id':'rpc-1','method':'message/send',"
		"'params':{'message':{'role':'user','messageId':'m-1','parts':[{'kind':'text',"
		"'text':'hello'},{'kind':'text','text':'world'}]},'metadata':{'history':[]}}}}",
		"canvas row: the whole shape, keys in order");

	message_is(
		"{'request_body':{'params':{'message':{'taskId':'t-9','contextId':'c-7','messageId':'m-2',"
		"'parts':[{'kind':'file','file':{'name':'a.txt','uri':'u'}},{'kind':'text','text':'see file'},"
		"{'kind':'video','frames':[1,2]},{'kind':'data','data':{'k':true}}]}}},"
		"'created_at':'" TS "','method':'message/send','source_id':'" PEER "','id':'" ROW "',"
		"'workspace_id':'44444444-4444-4444-8444-444444444444'}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':'" PEER "','origin':'agent',"
		"'peer_name':null,'peer_role':null,'method':'message/send','text':'see file',"
		"'parts':[{'kind':'file','file':{'name':'a.txt','uri':'u'}},{'kind':'text',"
		"'text':'see file'},{'kind':'video','frames':[1,2]},{'kind':'data','data':{'k':true}}],"
		"'files':[],'message_id':'m-2','context_id':'c-7','delegation_id':null,'created_at':'" TS "',"
		"'request':{'params':{'message':{'taskId':'t-9','contextId':'c-7','messageId':'m-2',"
		"'parts':[{'kind':'file','file':{'name':'a.txt','uri':'u'}},{'kind':'text',"
		"'text':'see file'},{'kind':'video','frames':[1,2]},{'kind':'data','data':{'k':true}}]}}}}",
		"peer row (keys shuffled in the row): agent origin, ids carried, unknown part kinds kept");

	message_is(
		"{'id':'" ROW "','source_id':'" PEER "','method':'message/send','created_at':'" TS "'}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':'" PEER "','origin':'agent',"
		"'peer_name':null,'peer_role':null,'method':'message/send','text':'','parts':[],'files':[],"
		"'message_id':null,'context_id':null,'delegation_id':null,'created_at':'" TS "','request':null}",
		"row without request_body: empty text, no parts, request null");

	message_is(
		"{'id':'" ROW "','source_id':null,'request_body':{'params':{'message':{'parts':"
		"[{'type':'text','text':'old'},{'type':'text','text':'style'}]}}}}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':null,'origin':'canvas',"
		"'peer_name':null,'peer_role':null,'method':null,'text':'old\\nstyle','parts':[{'type':'text',"
		"'text':'old'},{'type':'text','text':'style'}],'files':[],'message_id':null,'context_id':null,"
		"'delegation_id':null,'created_at':null,'request':{'params':{'message':{'parts':[{'type':'text',"
		"'text':'old'},{'type':'text','text':'style'}]}}}}",
		"parts with \"type\" give text; missing method, created_at and source_id are null");

	message_is(
		"{'id':'" ROW "','source_id':null,'request_body':'junk'}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':null,'origin':'canvas',"
		"'peer_name':null,'peer_role':null,'method':null,'text':'','parts':[],'files':[],"
		"'message_id':null,'context_id':null,'delegation_id':null,'created_at':null,'request':'junk'}",
		"request_body not an object: kept as request, nothing else taken from it");

	message_is(
		"{'id':'" ROW "','source_id':null,'request_body':{'jsonrpc':'2.0','method':'message/send'}}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':null,'origin':'canvas',"
		"'peer_name':null,'peer_role':null,'method':null,'text':'','parts':[],'files':[],"
		"'message_id':null,'context_id':null,'delegation_id':null,'created_at':null,"
		"'request':{'jsonrpc':'2.0','method':'message/send'}}",
		"params missing");

	message_is(
		"{'id':'" ROW "','source_id':null,'request_body':{'params':{'message':'hi'}}}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':null,'origin':'canvas',"
		"'peer_name':null,'peer_role':null,'method':null,'text':'','parts':[],'files':[],"
		"'message_id':null,'context_id':null,'delegation_id':null,'created_at':null,"
		"'request':{'params':{'message':'hi'}}}",
		"params.message not an object");

	message_is(
		"{'id':'" ROW "','source_id':null,'method':7,'created_at':12345,'request_body':{'params':"
		"{'message':{'parts':{'kind':'text','text':'x'},'messageId':5,'contextId':{},'taskId':[]}}}}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':null,'origin':'canvas',"
		"'peer_name':null,'peer_role':null,'method':null,'text':'','parts':[],'files':[],"
		"'message_id':null,'context_id':null,'delegation_id':null,'created_at':null,"
		"'request':{'params':{'message':{'parts':{'kind':'text','text':'x'},'messageId':5,"
		"'contextId':{},'taskId':[]}}}}",
		"wrong types along the path become null or []");

	message_is(
		"{'id':'" ROW "','source_id':null,'request_body':null}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':null,'origin':'canvas',"
		"'peer_name':null,'peer_role':null,'method':null,'text':'','parts':[],'files':[],"
		"'message_id':null,'context_id':null,'delegation_id':null,'created_at':null,'request':null}",
		"request_body null");

	message_is(
		"{'id':'" ROW "','source_id':null,'request_body':{'params':{'message':{'parts':"
		"[5,null,'x',{'kind':'text'},{'kind':'text','text':'ok'}]}}}}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':null,'origin':'canvas',"
		"'peer_name':null,'peer_role':null,'method':null,'text':'ok','parts':[5,null,"
		"'x',{'kind':'text'},{'kind':'text','text':'ok'}],'files':[],'message_id':null,"
		"'context_id':null,'delegation_id':null,'created_at':null,"
		"'request':{'params':{'message':{'parts':[5,null,'x',{'kind':'text'},{'kind':'text',"
		"'text':'ok'}]}}}}",
		"odd parts are kept and skipped by text");

	message_invalid(jv_array(), "not a JSON object", "row that is an array is invalid");
	message_invalid(jv_null(), "not a JSON object", "row that is null is invalid");
	message_invalid(jv_invalid(), "not a JSON object", "invalid row value is invalid");
	message_invalid(parse_q("{'source_id':null}"), "id is not a UUID: null", "row without id is invalid");
	message_invalid(parse_q("{'id':'row-1'}"), "id is not a UUID: \"row-1\"", "row id not a UUID is invalid");
	message_invalid(parse_q("{'id':42}"), "id is not a UUID", "numeric row id is invalid");
	message_invalid(parse_q("{'id':'11111111-1111-4111-8111-11111111111A'}"), "not a UUID",
		"upper-case row id is invalid");
	message_invalid(parse_q("{'id':'" ROW "/../x'}"), "not a UUID", "row id with a path tail is invalid");
	message_invalid(parse_q("{'id':'" ROW "\\u0000junk'}"), "not a UUID", "row id with a NUL and a tail is invalid");
	message_invalid(parse_q("{'id':'" ROW "','source_id':'peer-1'}"),
		"source_id is neither a UUID nor null: \"peer-1\"", "source_id junk is invalid");
	message_invalid(parse_q("{'id':'" ROW "','source_id':7}"), "source_id is neither", "numeric source_id is invalid");
	message_invalid(parse_q("{'id':'" ROW "','source_id':'../../etc'}"), ROW ": source_id",
		"the message names the row");
}

/* ---- ordering --------------------------------------------------------- */

/* The "id"s of an array of rows joined with ',' (non-objects as '?'). */
static char *ids_of(jv rows /* consumed */)
{
	struct buf b = {0};
	buf_append(&b, "", 0);
	int n = jv_get_kind(rows) == JV_KIND_ARRAY ? jv_array_length(jv_copy(rows)) : -1;
	for (int i = 0; i < n; i++) {
		jv row = jv_array_get(jv_copy(rows), i);
		jv id = jv_get_kind(row) == JV_KIND_OBJECT ? jv_object_get(jv_copy(row), jv_string("id")) : jv_invalid();
		const char *s = jv_get_kind(id) == JV_KIND_STRING ? jv_string_value(id) : "?";
		if (i)
			buf_append(&b, ",", 1);
		buf_append(&b, s, strlen(s));
		jv_free(id);
		jv_free(row);
	}
	if (n < 0)
		buf_append(&b, "not an array", 12);
	jv_free(rows);
	return b.p;
}

static void sorted_is(const char *rows, const char *want, const char *name)
{
	char *got = ids_of(rows_sort(parse_q(rows)));
	is_str(got, want, name);
	free(got);
}

static void test_rows_sort(void)
{
	sorted_is("[{'id':'c','created_at':'2026-04-30T10:15:03Z'},{'id':'a','created_at':'2026-04-30T10:15:01Z'},"
		"{'id':'b','created_at':'2026-04-30T10:15:02Z'}]", "a,b,c", "newest-first rows come out oldest first");
	sorted_is("[]", "", "empty array");
	sorted_is("[{'id':'only','created_at':'x'}]", "only", "one row");
	sorted_is("[{'id':'t1','created_at':'2026-01-01T00:00:01Z'},{'id':'n1'},{'id':'n2','created_at':null},"
		"5,{'id':'n3','created_at':17},{'id':'t0','created_at':'2026-01-01T00:00:00Z'}]",
		"n1,n2,?,n3,t0,t1", "rows lacking created_at sort first, in input order");
	sorted_is("[{'id':'e','created_at':'2026-04-30T10:15:02.5Z'},{'id':'b','created_at':'2026-04-30T10:15:02Z'},"
		"{'id':'d','created_at':'2026-04-30T10:15:02.123Z'},{'id':'c','created_at':'2026-04-30T10:15:02.12Z'},"
		"{'id':'a','created_at':'2026-04-30T10:15:01.999999Z'}]", "a,b,c,d,e",
		"fractions with trimmed zeros sort by value");

	/* Stability: many rows on three timestamps, interleaved. */
	{
		static const char *stamps[] = { "2026-04-30T10:00:02Z", "2026-04-30T10:00:01Z", "2026-04-30T10:00:03Z" };
		jv rows = jv_array();
		for (int i = 0; i < 60; i++) {
			jv row = jv_object_set(jv_object(), jv_string("id"), jv_string_fmt("%02d", i));
			row = jv_object_set(row, jv_string("created_at"), jv_string(stamps[(i * 7) % 3]));
			rows = jv_array_append(rows, row);
		}
		jv sorted = rows_sort(rows);
		int bad = 0, prev_stamp = -1, prev_id = -1;
		for (int i = 0; i < jv_array_length(jv_copy(sorted)); i++) {
			jv id = jv_object_get(jv_array_get(jv_copy(sorted), i), jv_string("id"));
			int n = atoi(jv_string_value(id));
			int order[] = { 1, 0, 2 }; /* rank of each stamp */
			int stamp = order[(n * 7) % 3];
			if (stamp < prev_stamp || (stamp == prev_stamp && n < prev_id))
				bad++;
			prev_stamp = stamp;
			prev_id = n;
			jv_free(id);
		}
		is_int(jv_array_length(sorted), 60, "no row lost");
		is_int(bad, 0, "equal timestamps keep their input order");
	}

	char *got = ids_of(rows_sort(jv_object()));
	is_str(got, "", "an object sorts to []");
	free(got);
	got = ids_of(rows_sort(jv_null()));
	is_str(got, "", "null sorts to []");
	free(got);

	/* The platform's order: (created_at, seq), times compared as instants. */
	sorted_is("[{'id':'c','seq':9,'created_at':'2026-04-30T10:15:02Z'},"
		"{'id':'a','seq':11,'created_at':'2026-04-30T10:15:02Z'},"
		"{'id':'b','seq':12,'created_at':'2026-04-30T10:15:02.000Z'}]", "c,a,b",
		"equal times: by seq, whatever the input order");
	sorted_is("[{'id':'b','seq':1,'created_at':'2026-04-30T12:15:02+02:00'},"
		"{'id':'a','seq':2,'created_at':'2026-04-30T10:15:01.999999999Z'}]", "a,b",
		"a zone offset is an instant like any other");
	sorted_is("[{'id':'b','seq':3,'created_at':'2026-04-30T10:15:02Z'},"
		"{'id':'n','created_at':'2026-04-30T10:15:02Z'},"
		"{'id':'j','seq':'2','created_at':'2026-04-30T10:15:02Z'},"
		"{'id':'a','seq':1,'created_at':'2026-04-30T10:15:02Z'}]", "n,j,a,b",
		"a row without a usable seq comes first at its time");
}

static void test_rows_oldest_first(void)
{
	const char *newest_first = "[{'id':'b','created_at':'2026-04-30T10:15:02Z'},{'id':'a','created_at':'2026-04-30T10:15:01Z'}]";
	char *got = ids_of(rows_oldest_first(parse_q(newest_first), true));
	is_str(got, "a,b", "a replay by time (newest first) is sorted oldest first");
	free(got);
	got = ids_of(rows_oldest_first(parse_q(newest_first), false));
	is_str(got, "b,a", "a page after a cursor keeps the platform's order");
	free(got);
}

/* ---- v2 rows ---------------------------------------------------------- */

static void test_rows_v2(void)
{
	message_is(
		"{'id':'" ROW "','seq':42,'source_id':'" PEER "','peer_name':'Researcher','peer_role':'analyst',"
		"'agent_card_url':'http://x/registry/discover/" PEER "','attachments':[],'method':'message/send',"
		"'created_at':'" TS "','request_body':{'params':{'message':{'messageId':'d-1','contextId':'c-1',"
		"'parts':[{'kind':'text','text':'please'}],'metadata':{'delegation_id':'d-1'}}}}}",
		"{'id':'" ROW "','seq':42,'workspace_id':'" OWN "','source_id':'" PEER "','origin':'agent',"
		"'peer_name':'Researcher','peer_role':'analyst','method':'message/send','text':'please',"
		"'parts':[{'kind':'text','text':'please'}],'files':[],'message_id':'d-1','context_id':'c-1',"
		"'delegation_id':'d-1','created_at':'" TS "','request':{'params':{'message':{'messageId':'d-1',"
		"'contextId':'c-1','parts':[{'kind':'text','text':'please'}],'metadata':{'delegation_id':'d-1'}}}}}",
		"a delegation with peer info: seq, peer name and role, delegation id");

	message_is(
		"{'id':'" ROW "','seq':-1,'source_id':null,'peer_name':7,'method':'message/send',"
		"'request_body':{'params':{'metadata':{'source_type':'self-nudge'},'message':{'parts':[]}}}}",
		"{'id':'" ROW "','seq':null,'workspace_id':'" OWN "','source_id':null,'origin':'system',"
		"'peer_name':null,'peer_role':null,'method':'message/send','text':'','parts':[],'files':[],"
		"'message_id':null,'context_id':null,'delegation_id':null,'created_at':null,"
		"'request':{'params':{'metadata':{'source_type':'self-nudge'},'message':{'parts':[]}}}}",
		"a self- source type is a system turn; a bad seq or peer name is null");

	struct { const char *body; const char *origin; const char *name; } origins[] = {
		{ "{'params':{'metadata':{'source':'canvas_user','user_id':'u'}}}", "canvas", "canvas_user: a person" },
		{ "{'params':{'metadata':{'history':[]}}}", "canvas", "no source at all: a person (older rows)" },
		{ "{'params':{'metadata':{'source':'github'}}}", "system", "a webhook: the platform" },
		{ "{'params':{'message':{'metadata':{'source':'platform','source_type':'self-first-boot-greet'}}}}",
		  "system", "source marks on the message itself count too" },
		{ "{'params':{'metadata':{'source':'canvas_user','source_type':'peer'}}}", "canvas",
		  "a source type that is not self-: not a system turn" },
		{ "{'params':{'metadata':{'source_type':'self-restart-context','source':'canvas_user'}}}", "system",
		  "self- wins over canvas_user" },
	};
	for (size_t i = 0; i < sizeof origins / sizeof *origins; i++) {
		char *row = q(origins[i].body);
		char *json = xasprintf("{\"id\":\"" ROW "\",\"source_id\":null,\"request_body\":%s}", row);
		jv line = rows_message(jv_parse(json), OWN);
		jv o = jv_object_get(line, jv_string("origin"));
		is_str(jv_get_kind(o) == JV_KIND_STRING ? jv_string_value(o) : NULL, origins[i].origin, origins[i].name);
		jv_free(o);
		free(json);
		free(row);
	}
}

static void kind_is(const char *row, enum row_kind want, const char *name)
{
	jv r = parse_q(row);
	is_int(rows_kind(r, OWN), want, name);
	jv_free(r);
}

static void test_rows_kind(void)
{
	kind_is("{'method':'message/send','source_id':'" PEER "'}", ROW_MESSAGE, "a peer's message");
	kind_is("{'method':'message/send','source_id':null}", ROW_MESSAGE, "a canvas message");
	kind_is("{'source_id':null}", ROW_MESSAGE, "no method: a message");
	kind_is("{'method':'notify','source_id':'" OWN "'}", ROW_ECHO, "notify: the echo of a canvas reply");
	kind_is("{'method':'delegate_result','source_id':'" PEER "'}", ROW_OWN, "delegate_result: own traffic");
	kind_is("{'method':'message/send','source_id':'" OWN "'}", ROW_OWN, "sent by this workspace: own traffic");
	kind_is("{'method':'tasks/get','source_id':'" OWN "'}", ROW_OWN, "own traffic whatever the method");
	kind_is("{'method':'chat_upload_receive','source_id':null}", ROW_UPLOAD, "a canvas upload");
	kind_is("{'method':'tasks/get','source_id':'" PEER "'}", ROW_UNSERVABLE, "tasks/get cannot be served");
	kind_is("{'method':'tasks/cancel'}", ROW_UNSERVABLE, "tasks/cancel cannot be served");
	kind_is("{'method':'message/stream'}", ROW_UNSERVABLE, "message/stream cannot be served");
	kind_is("{'method':'something/else'}", ROW_UNSERVABLE, "an unknown method cannot be served");
	kind_is("{'method':7}", ROW_MESSAGE, "a method that is no string: taken for a message");

	jv r = parse_q("{'seq':12}");
	is_int(rows_seq(r), 12, "seq read");
	jv_free(r);
	const char *bad[] = { "{'seq':1.5}", "{'seq':-3}", "{'seq':'7'}", "{}", "{'seq':1e300}" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		r = parse_q(bad[i]);
		is_int(rows_seq(r), -1, bad[i]);
		jv_free(r);
	}
	r = parse_q("{'seq':9007199254740992}");
	is_int(rows_seq(r), 9007199254740992LL, "seq up to 2^53");
	jv_free(r);
}

static void test_rows_parse(void)
{
	static const char page[] = "[{\"id\":\"x\"}]";
	jv rows = rows_parse(page, sizeof page - 1);
	is_int(jv_get_kind(rows), JV_KIND_ARRAY, "an array answer is the rows");
	jv_free(rows);
	static const char obj[] = "{\"rows\":[]}";
	rows = rows_parse(obj, sizeof obj - 1);
	jv msg = jv_invalid_get_msg(rows);
	is_str(jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : NULL,
	       "activity answer is a JSON object, not an array", "an object answer is refused, naming its kind");
	jv_free(msg);
	static const char junk[] = "[1,";
	rows = rows_parse(junk, sizeof junk - 1);
	msg = jv_invalid_get_msg(rows);
	ok(jv_get_kind(msg) == JV_KIND_STRING && strncmp(jv_string_value(msg), "activity answer is not JSON (", 29) == 0 &&
	   !strchr(jv_string_value(msg), '\n'), "a broken answer is refused on one line");
	jv_free(msg);
}

int main(void)
{
	test_rows_message();
	test_rows_sort();
	test_rows_oldest_first();
	test_rows_v2();
	test_rows_kind();
	test_rows_parse();
	return done_testing();
}
