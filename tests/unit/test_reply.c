/* test_reply.c: unit tests for reply line framing, reply validation, parts text and jq programs. */
#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <jv.h>

#include "tap.h"
#include "parts.h"
#include "linebuf.h"
#include "reply.h"
#include "jqprog.h"
#include "util.h"

/* ---- linebuf ----------------------------------------------------------- */

/* Every callback is recorded as "<len>:<line>|" or "TOO<len>|" (a NUL inside
 * a line is written as "\0"), so a whole run compares as one string. */
static void record(void *ctx, const char *line, size_t len, bool too_long)
{
	struct buf *b = ctx;
	char num[32];
	if (too_long) {
		snprintf(num, sizeof num, "TOO%zu|", len);
		buf_append(b, num, strlen(num));
		return;
	}
	snprintf(num, sizeof num, "%zu:", len);
	buf_append(b, num, strlen(num));
	for (size_t i = 0; i < len; i++) {
		if (line[i] == '\0')
			buf_append(b, "\\0", 2);
		else
			buf_append(b, &line[i], 1);
	}
	if (line[len] != '\0')
		buf_append(b, "<not NUL-terminated>", 20);
	buf_append(b, "|", 1);
}

/* Feeds data in the given chunk sizes (0-terminated list; the rest in one go),
 * then finishes. Returns the record (caller frees). */
static char *frame(size_t max, const char *data, size_t n, const size_t *chunks)
{
	struct linebuf lb;
	struct buf out = {0};
	linebuf_init(&lb, max);
	size_t off = 0;
	for (; chunks && *chunks && off < n; chunks++) {
		size_t c = *chunks < n - off ? *chunks : n - off;
		linebuf_feed(&lb, data + off, c, record, &out);
		off += c;
	}
	linebuf_feed(&lb, data + off, n - off, record, &out);
	linebuf_finish(&lb, record, &out);
	linebuf_free(&lb);
	buf_append(&out, "", 0);
	return out.p;
}

static char *frame_str(size_t max, const char *s)
{
	return frame(max, s, strlen(s), NULL);
}

/* Feeds one byte at a time. */
static char *frame_bytes(size_t max, const char *data, size_t n)
{
	struct linebuf lb;
	struct buf out = {0};
	linebuf_init(&lb, max);
	for (size_t i = 0; i < n; i++)
		linebuf_feed(&lb, data + i, 1, record, &out);
	linebuf_finish(&lb, record, &out);
	linebuf_free(&lb);
	buf_append(&out, "", 0);
	return out.p;
}

/* The length a too-long report gives is what had been seen when the cap was
 * passed, which depends on how the input was split: checks it is within
 * [lo, hi] and removes it from the record ("TOO17|" becomes "TOO|"). */
static bool too_long_seen_in(char *rec, size_t lo, size_t hi)
{
	char *too = strstr(rec, "TOO");
	if (!too)
		return false;
	char *end;
	size_t seen = strtoul(too + 3, &end, 10);
	memmove(too + 3, end, strlen(end) + 1);
	return seen >= lo && seen <= hi;
}

#define FRAME_IS(max, input, want, name) do { \
	char *got_ = frame_str((max), (input)); \
	is_str(got_, (want), name); \
	free(got_); \
} while (0)

static void test_linebuf(void)
{
	FRAME_IS(64, "a\nbb\n", "1:a|2:bb|", "two lines");
	FRAME_IS(64, "a\r\nb\r\n", "1:a|1:b|", "CRLF: the \\r is stripped");
	FRAME_IS(64, "a\r\r\n", "2:a\r|", "only one trailing \\r is stripped");
	FRAME_IS(64, "a\rb\n", "3:a\rb|", "a \\r inside a line is kept");
	FRAME_IS(64, "\n\r\n\n", "0:|0:|0:|", "empty lines are passed on with length 0");
	FRAME_IS(64, "a\nlast", "1:a|4:last|", "final line without a newline counts");
	FRAME_IS(64, "last\r", "4:last|", "final line without a newline loses its \\r too");
	FRAME_IS(64, "", "", "no input, no lines");
	FRAME_IS(64, "a\n", "1:a|", "finish after a complete line adds nothing");

	{
		const char in[] = "a\0b\n\0\n";
		char *got = frame(64, in, sizeof in - 1, NULL);
		is_str(got, "3:a\\0b|1:\\0|", "NUL bytes are passed through inside a line");
		free(got);
	}

	/* Every split position (and every pair of them) gives the same lines. */
	{
		const char in[] = "hello\r\n\n{\"id\":\"x\"}\nab\0c\r\n0123456789ABCDEFGHIJ\nok\nlast";
		size_t n = sizeof in - 1;
		const char *want = "5:hello|0:|10:{\"id\":\"x\"}|4:ab\\0c|TOO|2:ok|4:last|";
		int bad = 0;
		for (size_t i = 0; i <= n; i++) {
			for (size_t j = 0; i + j <= n; j++) {
				size_t chunks[] = { i, j ? j : n, 0 };
				char *got = frame(16, in, n, i ? chunks : NULL);
				if (!too_long_seen_in(got, 17, 20) || strcmp(got, want) != 0)
					bad++;
				free(got);
			}
		}
		is_int(bad, 0, "lines split at every byte position (and pair of positions) come out the same");
		char *got = frame_bytes(16, in, n);
		is_str(got, "5:hello|0:|10:{\"id\":\"x\"}|4:ab\\0c|TOO17|2:ok|4:last|",
			"one byte at a time gives the same lines");
		free(got);
	}

	/* The cap. */
	FRAME_IS(5, "12345\n", "5:12345|", "a line of exactly max bytes is delivered");
	FRAME_IS(5, "12345\r\n", "5:12345|", "a CRLF line of exactly max bytes is delivered");
	FRAME_IS(5, "12345", "5:12345|", "a final line of exactly max bytes is delivered");
	FRAME_IS(5, "123456\n", "TOO6|", "max + 1 bytes is too long");
	FRAME_IS(5, "12345\r\r\n", "TOO7|", "max bytes, \\r, \\r is too long");
	{
		char *got = frame_bytes(5, "12345\r\nabcdef\nxy\n", 17);
		is_str(got, "5:12345|TOO6|2:xy|", "cap checks fed one byte at a time");
		free(got);
		got = frame_bytes(5, "12345\rX\nok\n", 11);
		is_str(got, "TOO7|2:ok|", "a \\r held at the cap that is not the end is too long");
		free(got);
	}
	FRAME_IS(8, "0123456789abc\nok\n", "TOO13|2:ok|",
		"a too-long line is reported once and the next line is delivered");
	{
		char *got = frame_bytes(8, "0123456789abc\nok\n", 17);
		is_str(got, "TOO9|2:ok|", "fed a byte at a time, it is reported once, when the cap is passed");
		free(got);
		got = frame_bytes(8, "0123456789abc", 13);
		is_str(got, "TOO9|", "a too-long final line is not reported again by finish");
		free(got);
	}

	/* Memory stays bounded by the cap, however long the line. */
	{
		struct linebuf lb;
		struct buf out = {0};
		linebuf_init(&lb, 100);
		char chunk[4096];
		memset(chunk, 'x', sizeof chunk);
		for (int i = 0; i < 256; i++)
			linebuf_feed(&lb, chunk, sizeof chunk, record, &out);
		ok(lb.cap <= 102, "1 MiB without a newline keeps the buffer within max + 2 (cap %zu)", lb.cap);
		ok(lb.discarding && lb.discarded == 256 * sizeof chunk, "discarding, %zu bytes counted", lb.discarded);
		linebuf_feed(&lb, "\nnext\n", 6, record, &out);
		is_str(out.p, "TOO4096|4:next|", "reported once, then the next line arrives");
		linebuf_free(&lb);
		buf_free(&out);
	}
}

/* ---- reply_parse --------------------------------------------------------- */

static char *dump(jv v /* not consumed */)
{
	jv d = jv_dump_string(jv_copy(v), 0);
	char *s = xstrdup(jv_string_value(d));
	jv_free(d);
	return s;
}

/* Parses and validates json; returns reply_parse's result. */
static int parse(const char *json, struct reply *r, char **err)
{
	return reply_parse(jv_parse(json), r, err);
}

static void expect_ok(const char *json, enum reply_kind kind, const char *id,
	const char *parts, const char *error)
{
	struct reply r;
	char *err = NULL;
	int rc = parse(json, &r, &err);
	char *got_parts = dump(r.parts);
	bool pass = rc == 0 && err == NULL && r.kind == kind
		&& ((id == NULL && r.id == NULL) || (id && r.id && strcmp(id, r.id) == 0))
		&& strcmp(got_parts, parts) == 0
		&& ((error == NULL && r.error == NULL) || (error && r.error && strcmp(error, r.error) == 0));
	ok(pass, "accepted: %s", json);
	if (!pass)
		printf("#   rc %d kind %d id %s parts %s error %s (err %s)\n", rc, (int)r.kind,
			r.id ? r.id : "(null)", got_parts, r.error ? r.error : "(null)", err ? err : "(null)");
	free(got_parts);
	free(err);
	reply_free(&r);
}

static void expect_err(const char *json, const char *want)
{
	struct reply r;
	char *err = NULL;
	int rc = parse(json, &r, &err);
	bool pass = rc == -1 && err && strcmp(err, want) == 0 && r.id == NULL
		&& jv_get_kind(r.parts) == JV_KIND_NULL && r.error == NULL;
	ok(pass, "rejected: %s", json);
	if (!pass)
		printf("#   rc %d err %s\n#   want   %s\n", rc, err ? err : "(null)", want);
	free(err);
	reply_free(&r); /* safe after a failure too */
}

static void test_reply_parse(void)
{
	expect_ok("{\"id\":\"x\",\"text\":\"hi\"}", REPLY_TEXT, "x", "[{\"kind\":\"text\",\"text\":\"hi\"}]", NULL);
	expect_ok("{\"id\":\"x\",\"text\":\"\"}", REPLY_TEXT, "x", "[{\"kind\":\"text\",\"text\":\"\"}]", NULL);
	expect_ok("{\"id\":\"x\",\"parts\":[{\"kind\":\"text\",\"text\":\"a\"},{\"type\":\"file\",\"file\":{\"uri\":\"u\"}},{\"kind\":\"video\",\"z\":[1]}]}",
		REPLY_PARTS, "x",
		"[{\"kind\":\"text\",\"text\":\"a\"},{\"type\":\"file\",\"file\":{\"uri\":\"u\"}},{\"kind\":\"video\",\"z\":[1]}]", NULL);
	expect_ok("{\"id\":\"x\"}", REPLY_ACK, "x", "null", NULL);
	expect_ok("{\"id\":\"x\",\"error\":\"boom\"}", REPLY_ERROR, "x", "null", "boom");
	expect_ok("{\"id\":\"x\",\"retry\":true}", REPLY_RETRY, "x", "null", NULL);
	expect_ok("{\"id\":\"x\",\"retry\":false}", REPLY_ACK, "x", "null", NULL);
	expect_ok("{\"id\":\"x\",\"text\":\"t\",\"retry\":false}", REPLY_TEXT, "x", "[{\"kind\":\"text\",\"text\":\"t\"}]", NULL);
	expect_ok("{\"text\":\"hi\"}", REPLY_TEXT, NULL, "[{\"kind\":\"text\",\"text\":\"hi\"}]", NULL);
	expect_ok("{\"parts\":[{\"type\":\"text\",\"text\":\"p\"}]}", REPLY_PARTS, NULL, "[{\"type\":\"text\",\"text\":\"p\"}]", NULL);
	expect_ok("{\"error\":\"e\"}", REPLY_ERROR, NULL, "null", "e");
	expect_ok("{\"id\":\"x\",\"text\":\"t\",\"extra\":{\"a\":1}}", REPLY_TEXT, "x", "[{\"kind\":\"text\",\"text\":\"t\"}]", NULL);

	expect_err("[1]", "reply is not a JSON object");
	expect_err("\"hi\"", "reply is not a JSON object");
	expect_err("null", "reply is not a JSON object");
	expect_err("42", "reply is not a JSON object");
	{
		struct reply r;
		char *err = NULL;
		int rc = parse("{\"id\":", &r, &err);
		ok(rc == -1 && err && strncmp(err, "reply is not JSON: ", 19) == 0,
			"a parse error is reported with its message (%s)", err ? err : "(null)");
		free(err);
		reply_free(&r);
		rc = reply_parse(jv_invalid(), &r, &err);
		is_str(err, "reply is not JSON", "an invalid value without a message");
		free(err);
		reply_free(&r);
	}
	expect_err("{\"id\":\"\",\"text\":\"t\"}", "\"id\" must be a non-empty string");
	expect_err("{\"id\":7,\"text\":\"t\"}", "\"id\" must be a non-empty string");
	expect_err("{\"id\":null,\"text\":\"t\"}", "\"id\" must be a non-empty string");
	expect_err("{\"id\":\"a\\u0000b\"}", "\"id\" contains a NUL character");
	expect_err("{\"id\":\"x\",\"text\":5}", "\"text\" must be a string");
	expect_err("{\"id\":\"x\",\"text\":null}", "\"text\" must be a string");
	expect_err("{\"id\":\"x\",\"parts\":[]}", "\"parts\" must be a non-empty array of objects");
	expect_err("{\"id\":\"x\",\"parts\":{\"kind\":\"text\"}}", "\"parts\" must be a non-empty array of objects");
	expect_err("{\"id\":\"x\",\"parts\":[\"hi\"]}", "\"parts\" must be a non-empty array of objects");
	expect_err("{\"id\":\"x\",\"parts\":[{\"kind\":\"text\",\"text\":\"a\"},{\"text\":\"b\"}]}",
		"\"parts\"[1] has no \"kind\" string");
	expect_err("{\"id\":\"x\",\"parts\":[{\"kind\":3}]}", "\"parts\"[0] has no \"kind\" string");
	expect_err("{\"id\":\"x\",\"error\":{\"m\":1}}", "\"error\" must be a string");
	expect_err("{\"id\":\"x\",\"retry\":\"yes\"}", "\"retry\" must be true or false");
	expect_err("{\"id\":\"x\",\"retry\":1}", "\"retry\" must be true or false");
	expect_err("{\"id\":\"x\",\"text\":\"a\",\"parts\":[{\"kind\":\"text\",\"text\":\"b\"}]}",
		"reply has both \"text\" and \"parts\"");
	expect_err("{\"id\":\"x\",\"error\":\"e\",\"text\":\"t\"}", "reply has both \"error\" and \"text\"");
	expect_err("{\"id\":\"x\",\"error\":\"e\",\"parts\":[{\"kind\":\"data\"}]}", "reply has both \"error\" and \"parts\"");
	expect_err("{\"id\":\"x\",\"retry\":true,\"text\":\"t\"}", "reply has both \"retry\" and \"text\"");
	expect_err("{\"id\":\"x\",\"retry\":true,\"error\":\"e\"}", "reply has both \"retry\" and \"error\"");
	expect_err("{\"retry\":true}", "\"retry\" needs an \"id\"");
	expect_err("{}", "reply without \"id\" needs \"text\", \"parts\" or \"error\"");
	expect_err("{\"retry\":false,\"other\":1}", "reply without \"id\" needs \"text\", \"parts\" or \"error\"");
}

/* ---- parts_text ---------------------------------------------------------- */

static void parts_text_is(const char *json, const char *want, const char *name)
{
	jv parts = jv_parse(json);
	char *got = parts_text(parts);
	is_str(got, want, name);
	free(got);
	jv_free(parts);
}

static void test_parts_text(void)
{
	parts_text_is("[{\"kind\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"},"
		"{\"kind\":\"file\",\"file\":{\"name\":\"f\"}},{\"kind\":\"text\"},5,null,"
		"{\"kind\":\"text\",\"text\":7},{\"kind\":\"text\",\"text\":\"c\"}]",
		"a\nb\nc", "text of text parts (kind or type) joined with \\n, others skipped");
	parts_text_is("[{\"kind\":\"text\",\"text\":\"\"},{\"kind\":\"text\",\"text\":\"x\"}]", "\nx",
		"an empty text part still counts in the join");
	parts_text_is("[{\"kind\":\"data\",\"type\":\"text\",\"text\":\"no\"}]", "", "\"kind\" wins over \"type\"");
	parts_text_is("[]", "", "no parts: empty text");
	parts_text_is("{\"kind\":\"text\",\"text\":\"a\"}", "", "not an array: empty text");
	parts_text_is("\"text\"", "", "a string: empty text");

	jv parts = jv_parse("[{\"kind\":\"text\",\"text\":\"a\\u0000b\"}]");
	jv t = parts_text_jv(parts);
	is_int(jv_string_length_bytes(t), 3, "parts_text_jv keeps a NUL in the text");
	jv_free(parts);
}

/* ---- jqprog ----------------------------------------------------------- */

/* Runs program on the JSON input; the outputs as compact JSON, or "ERR:<msg>". */
static char *run_jq(struct jqprog *p, const char *input)
{
	jv r = jqprog_run(p, jv_parse(input));
	if (jv_is_valid(r)) {
		char *s = dump(r);
		jv_free(r);
		return s;
	}
	jv msg = jv_invalid_get_msg(r);
	char *s = jv_get_kind(msg) == JV_KIND_STRING
		? xasprintf("ERR:%s", jv_string_value(msg)) : xstrdup("ERR without a string message");
	jv_free(msg);
	return s;
}

static void jq_is(const char *program, const char *input, const char *want, const char *name)
{
	char *err = NULL;
	struct jqprog *p = jqprog_compile(program, &err);
	if (!p) {
		ok(0, "%s (compile failed: %s)", name, err ? err : "?");
		free(err);
		return;
	}
	char *got = run_jq(p, input);
	is_str(got, want, name);
	free(got);
	jqprog_free(p);
}

static void compile_fails(const char *program, const char *want_prefix, const char *name)
{
	char *err = NULL;
	struct jqprog *p = jqprog_compile(program, &err);
	bool pass = p == NULL && err && strncmp(err, want_prefix, strlen(want_prefix)) == 0
		&& strchr(err, '\n') == NULL;
	ok(pass, "%s", name);
	if (!pass)
		printf("#   got:  %s\n#   want: %s...\n", err ? err : "(null)", want_prefix);
	free(err);
	jqprog_free(p);
}

static void test_jqprog(void)
{
	jq_is(".", "{\"b\":1,\"a\":[true,null]}", "[{\"b\":1,\"a\":[true,null]}]", "identity");
	jq_is("select(.a == 2)", "{\"a\":1}", "[]", "select dropping everything gives []");
	jq_is("select(.a == 1) | .a", "{\"a\":1}", "[1]", "select keeping");
	jq_is(".[]", "[1,\"two\",{\"three\":3}]", "[1,\"two\",{\"three\":3}]", "multiple outputs");
	jq_is("empty", "1", "[]", "empty");
	jq_is("error(\"x\")", "null", "ERR:x", "error(\"x\") is a runtime error with its message");
	jq_is(".a.b", "\"s\"", "ERR:Cannot index string with string \"a\"", ".a.b on a string is an error");
	jq_is("error({\"a\":1})", "null", "ERR:{\"a\":1}", "an error value that is not a string is dumped");
	jq_is("1, error(\"x\"), 2", "null", "ERR:x", "an error after an output fails the whole run");
	jq_is("\"bye\\n\" | halt_error", "null", "ERR:bye", "halt_error is an error with its message");
	jq_is("{\"a\":1} | halt_error(3)", "null", "ERR:{\"a\":1}", "halt_error with an object message");
	jq_is("\"\" | halt_error(4)", "null", "ERR:halt_error with exit code 4", "halt_error with an empty message");
	jq_is("1, halt, 2", "null", "[1]", "halt ends the run quietly, keeping earlier outputs");
	/* libjq 1.6 names this error "break"; what matters is that it fails. */
	jq_is("try input catch \"failed\"", "null", "[\"failed\"]", "input has no data");
	jq_is("[inputs]", "null", "[[]]", "inputs is empty");
	jq_is("{id, text: .t}", "{\"id\":\"x\",\"t\":\"y\",\"z\":0}", "[{\"id\":\"x\",\"text\":\"y\"}]", "object construction");

	compile_fails(".[", "jq: error: syntax error, unexpected $end", "syntax error message, one line");
	{
		char *err = NULL;
		struct jqprog *p = jqprog_compile("1 +", &err);
		ok(p == NULL && err && strstr(err, "at <top-level>, line 1:") != NULL,
			"the compile error names the place (%s)", err ? err : "(null)");
		free(err);
	}
	compile_fails("foo", "jq: error: foo/0 is not defined at <top-level>, line 1:", "undefined function");
	compile_fails("import \"x\" as x; .", "jq: error: module not found: x", "no module path: imports fail");
	compile_fails("include \"x\"; .", "jq: error: module not found: x", "no module path: includes fail");
	{
		struct jqprog *p = jqprog_compile(".[", NULL);
		ok(p == NULL, "a NULL err pointer is allowed");
	}

	/* One compiled program serves many runs; errors and halts between them
	 * must not leave anything behind (checked under valgrind). */
	{
		char *err = NULL;
		struct jqprog *p = jqprog_compile(
			"if .n % 100 == 7 then error(\"seven\") elif .n % 100 == 9 then halt_error "
			"else select(.n % 2 == 0) | {n, s: (.s + \"!\")}, .n end", &err);
		ok(p != NULL, "reused program compiles (%s)", err ? err : "ok");
		free(err);
		int bad = 0, outputs = 0, errors = 0;
		for (int i = 0; p && i < 10000; i++) {
			jv in = jv_object_set(jv_object(), jv_string("n"), jv_number(i));
			in = jv_object_set(in, jv_string("s"), jv_string_fmt("row %d", i));
			jv r = jqprog_run(p, in);
			if (!jv_is_valid(r)) {
				errors++;
				if (i % 100 != 7 && i % 100 != 9)
					bad++;
				jv_free(jv_invalid_get_msg(r));
				continue;
			}
			int n = jv_array_length(r);
			outputs += n;
			if (n != (i % 2 == 0 ? 2 : 0))
				bad++;
		}
		is_int(bad, 0, "10,000 runs of one program give the expected outputs");
		is_int(outputs, 2 * 5000, "every even input gave two outputs");
		is_int(errors, 200, "errors and halt_errors in between were reported");
		jqprog_free(p);
	}
}

#define PEER "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"

static void test_new_messages(void)
{
	struct reply r;
	char *err = NULL;
	ok(parse("{\"to\":\"" PEER "\",\"text\":\"hi\",\"context_id\":\"c1\"}", &r, &err) == 0 && r.kind == REPLY_SEND,
	   "a \"to\" line is a new message");
	is_str(r.to, PEER, "to a peer");
	is_str(r.context_id, "c1", "its context");
	ok(r.id == NULL, "no id");
	jv d = jv_dump_string(jv_copy(r.parts), 0);
	is_str(jv_string_value(d), "[{\"kind\":\"text\",\"text\":\"hi\"}]", "the text as one part");
	jv_free(d);
	reply_free(&r);
	ok(parse("{\"to\":\"canvas\",\"parts\":[{\"kind\":\"text\",\"text\":\"p\"}]}", &r, &err) == 0 &&
	   r.kind == REPLY_SEND && r.to == NULL && r.context_id == NULL, "to the canvas, with parts");
	reply_free(&r);

	static const struct { const char *line, *why; } bad[] = {
		{ "{\"to\":\"nobody\",\"text\":\"x\"}", "\"to\" must be a workspace id (a lower-case UUID) or \"canvas\"" },
		{ "{\"to\":\"AAAAAAAA-AAAA-4AAA-8AAA-AAAAAAAAAAAA\",\"text\":\"x\"}", "\"to\" must be a workspace id (a lower-case UUID) or \"canvas\"" },
		{ "{\"to\":7,\"text\":\"x\"}", "\"to\" must be a workspace id (a lower-case UUID) or \"canvas\"" },
		{ "{\"to\":\"canvas\"}", "a new message (\"to\") needs \"text\" or \"parts\"" },
		{ "{\"to\":\"canvas\",\"id\":\"x\",\"text\":\"t\"}", "a line has both \"to\" (a new message) and \"id\" (a reply)" },
		{ "{\"to\":\"canvas\",\"error\":\"e\"}", "a new message (\"to\") has no \"error\"" },
		{ "{\"to\":\"canvas\",\"text\":\"t\",\"retry\":true}", "a new message (\"to\") has no \"retry\"" },
		{ "{\"to\":\"canvas\",\"text\":\"t\",\"parts\":[{\"kind\":\"text\"}]}", "a new message has both \"text\" and \"parts\"" },
		{ "{\"to\":\"canvas\",\"text\":5}", "\"text\" must be a string" },
		{ "{\"to\":\"canvas\",\"parts\":[]}", "\"parts\" must be a non-empty array of objects" },
		{ "{\"to\":\"canvas\",\"text\":\"t\",\"context_id\":3}", "\"context_id\" must be a string" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		char *why = NULL;
		ok(parse(bad[i].line, &r, &why) == -1, "refused: %s", bad[i].line);
		is_str(why, bad[i].why, "  and why");
		free(why);
		reply_free(&r);
	}
}

static void test_capped_runs(void)
{
	char *err = NULL;
	struct jqprog *p = jqprog_compile("range(1e9)", &err);
	bool cut = false;
	jv out = jqprog_run_capped(p, jv_null(), 1000, &cut);
	ok(cut, "a generator past the cap is cut");
	is_int(jv_array_length(jv_copy(out)), 1000, "the first 1000 outputs are kept");
	jv last = jv_array_get(out, 999);
	ok(jv_get_kind(last) == JV_KIND_NUMBER && jv_number_value(last) == 999, "in order");
	jv_free(last);
	jqprog_free(p);
	p = jqprog_compile("range(3)", &err);
	out = jqprog_run_capped(p, jv_null(), 3, &cut);
	ok(!cut && jv_array_length(out) == 3, "exactly the cap is not cut");
	out = jqprog_run_capped(p, jv_null(), 2, &cut);
	ok(cut && jv_array_length(out) == 2, "one more than the cap is");
	out = jqprog_run_capped(p, jv_null(), 5, &cut);
	ok(!cut && jv_array_length(out) == 3, "the next run starts afresh");
	jqprog_free(p);
}

static void test_kind_names(void)
{
	const enum reply_kind kinds[] = { REPLY_TEXT, REPLY_PARTS, REPLY_ACK, REPLY_ERROR, REPLY_RETRY, REPLY_SEND };
	size_t n = sizeof kinds / sizeof kinds[0];
	bool distinct = true;
	for (size_t i = 0; i < n; i++)
		for (size_t j = i + 1; j < n; j++)
			distinct = distinct && strcmp(reply_kind_name(kinds[i]), reply_kind_name(kinds[j])) != 0;
	ok(distinct, "each kind of reply has a name of its own for log lines");
	is_str(reply_kind_name(REPLY_ACK), "done, no reply", "an acknowledgement");
}

int main(void)
{
	test_kind_names();
	test_linebuf();
	test_reply_parse();
	test_new_messages();
	test_capped_runs();
	test_parts_text();
	test_jqprog();
	return done_testing();
}
