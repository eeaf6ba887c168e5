/* test_util.c: unit tests for util.c (UUIDs, numbers, buffers, clock) and log.c (levels, formats, redaction). */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jv.h>

#include "log.h"
#include "tap.h"
#include "util.h"
#include "json.h"

#define SECRET "s3cr3t-token-value-0123456789abcdefghijklm"

/* --- stderr capture: log.c writes to fd 2 directly, so swap the fd. --- */

static int saved_stderr = -1;
static char capture_path[] = "/tmp/test_util.stderr.XXXXXX";

static void capture_start(void)
{
	int fd = mkstemp(capture_path);
	if (fd < 0) {
		perror("mkstemp");
		exit(99);
	}
	fflush(stderr);
	saved_stderr = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
}

/* Restores stderr and returns what was written meanwhile (caller frees). */
static char *capture_end(void)
{
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	struct buf b = {0};
	buf_append(&b, "", 0);
	int fd = open(capture_path, O_RDONLY);
	char chunk[4096];
	ssize_t r;
	while (fd >= 0 && (r = read(fd, chunk, sizeof chunk)) > 0)
		buf_append(&b, chunk, (size_t)r);
	if (fd >= 0)
		close(fd);
	unlink(capture_path);
	memcpy(capture_path + strlen(capture_path) - 6, "XXXXXX", 6);
	return b.p;
}

static int count_char(const char *s, char c)
{
	int n = 0;
	for (; *s; s++)
		n += *s == c;
	return n;
}

static void test_uuid_valid(void)
{
	ok(uuid_valid("123e4567-e89b-42d3-a456-426614174000"), "uuid_valid: canonical lower-case");
	ok(uuid_valid("00000000-0000-0000-0000-000000000000"), "uuid_valid: all zeros");
	ok(!uuid_valid("123E4567-E89B-42D3-A456-426614174000"), "uuid_valid: upper case rejected");
	ok(!uuid_valid("123e4567-e89b-42d3-a456-42661417400"), "uuid_valid: 35 chars rejected");
	ok(!uuid_valid("123e4567-e89b-42d3-a456-4266141740000"), "uuid_valid: 37 chars rejected");
	ok(!uuid_valid("123e4567e-89b-42d3-a456-426614174000"), "uuid_valid: dash moved rejected");
	ok(!uuid_valid("123e4567-e89b-42d3-a4561426614174000-"), "uuid_valid: dash at the end rejected");
	ok(!uuid_valid("123e4567ae89bb42d3ca456d426614174000"), "uuid_valid: no dashes rejected");
	ok(!uuid_valid("123e4567-e89b-42d3-a456-42661417400g"), "uuid_valid: non-hex rejected");
	ok(!uuid_valid("123e4567-e89b-42d3-a456-42661417400 "), "uuid_valid: trailing space rejected");
	ok(!uuid_valid(""), "uuid_valid: empty rejected");
	ok(!uuid_valid(NULL), "uuid_valid: NULL rejected");
	ok(!uuid_valid("../../../../etc/passwd-aaaaaaaaaaaaaa"), "uuid_valid: path rejected");
}

static void test_uuid_new(void)
{
	enum { N = 200 };
	static char ids[N][UUID_LEN + 1];
	bool all_valid = true, all_v4 = true, distinct = true;
	for (int i = 0; i < N; i++) {
		uuid_new(ids[i]);
		all_valid &= uuid_valid(ids[i]);
		all_v4 &= ids[i][14] == '4' && strchr("89ab", ids[i][19]) != NULL;
		for (int j = 0; j < i; j++)
			distinct &= strcmp(ids[i], ids[j]) != 0;
	}
	ok(all_valid, "uuid_new: every id is a valid lower-case UUID");
	ok(all_v4, "uuid_new: version 4, RFC 4122 variant");
	ok(distinct, "uuid_new: %d ids are distinct", N);
}

static void test_parse_long(void)
{
	long v = -777;
	ok(parse_long("42", 0, 100, &v) == 0 && v == 42, "parse_long: 42");
	ok(parse_long("-5", -10, 10, &v) == 0 && v == -5, "parse_long: negative");
	ok(parse_long("0", 0, 0, &v) == 0 && v == 0, "parse_long: zero in [0,0]");
	ok(parse_long("1", 1, 16, &v) == 0 && v == 1, "parse_long: lower bound accepted");
	ok(parse_long("16", 1, 16, &v) == 0 && v == 16, "parse_long: upper bound accepted");

	v = -777;
	ok(parse_long("0", 1, 16, &v) == -1, "parse_long: below min rejected");
	ok(parse_long("17", 1, 16, &v) == -1, "parse_long: above max rejected");
	ok(parse_long("", 0, 100, &v) == -1, "parse_long: empty rejected");
	ok(parse_long(NULL, 0, 100, &v) == -1, "parse_long: NULL rejected");
	ok(parse_long(" 1", 0, 100, &v) == -1, "parse_long: leading space rejected");
	ok(parse_long("1 ", 0, 100, &v) == -1, "parse_long: trailing space rejected");
	ok(parse_long("1x", 0, 100, &v) == -1, "parse_long: trailing junk rejected");
	ok(parse_long("+1", 0, 100, &v) == -1, "parse_long: plus sign rejected");
	ok(parse_long("0x10", 0, 100, &v) == -1, "parse_long: hex rejected");
	ok(parse_long("1.5", 0, 100, &v) == -1, "parse_long: fraction rejected");
	ok(parse_long("-", -10, 100, &v) == -1, "parse_long: lone minus rejected");
	ok(parse_long("99999999999999999999999", 0, LONG_MAX, &v) == -1, "parse_long: overflow rejected");
	ok(parse_long("-99999999999999999999999", LONG_MIN, 0, &v) == -1, "parse_long: underflow rejected");
	is_int(v, -777, "parse_long: output untouched on failure");

	char max[32];
	snprintf(max, sizeof max, "%ld", LONG_MAX);
	ok(parse_long(max, 0, LONG_MAX, &v) == 0 && v == LONG_MAX, "parse_long: LONG_MAX");
}

static void test_parse_seconds(void)
{
	double d = -1;
	ok(parse_seconds("1", 0, 60, &d) == 0 && d == 1.0, "parse_seconds: 1");
	ok(parse_seconds("0.25", 0, 60, &d) == 0 && d == 0.25, "parse_seconds: 0.25");
	ok(parse_seconds(".5", 0, 60, &d) == 0 && d == 0.5, "parse_seconds: .5");
	ok(parse_seconds("60", 0, 60, &d) == 0 && d == 60.0, "parse_seconds: upper bound accepted");
	ok(parse_seconds("0", 0, 60, &d) == 0 && d == 0.0, "parse_seconds: lower bound accepted");

	d = -1;
	ok(parse_seconds("60.001", 0, 60, &d) == -1, "parse_seconds: above max rejected");
	ok(parse_seconds("-1", 0, 60, &d) == -1, "parse_seconds: negative rejected by range");
	ok(parse_seconds("", 0, 60, &d) == -1, "parse_seconds: empty rejected");
	ok(parse_seconds(" 1", 0, 60, &d) == -1, "parse_seconds: leading space rejected");
	ok(parse_seconds("1 ", 0, 60, &d) == -1, "parse_seconds: trailing space rejected");
	ok(parse_seconds("1x", 0, 60, &d) == -1, "parse_seconds: trailing junk rejected");
	ok(parse_seconds("1s", 0, 60, &d) == -1, "parse_seconds: unit suffix rejected");
	ok(parse_seconds("inf", 0, 1e300, &d) == -1, "parse_seconds: inf rejected");
	ok(parse_seconds("nan", 0, 1e300, &d) == -1, "parse_seconds: nan rejected");
	ok(parse_seconds("0x10", 0, 60, &d) == -1, "parse_seconds: hex float rejected");
	ok(parse_seconds("1e999", 0, 1e300, &d) == -1, "parse_seconds: overflow rejected");
	ok(parse_seconds(".", 0, 60, &d) == -1, "parse_seconds: lone dot rejected");
	ok(d == -1, "parse_seconds: output untouched on failure");
}

static void test_buf(void)
{
	struct buf b = {0};
	buf_append(&b, "hello", 5);
	buf_append(&b, " world", 6);
	is_str(b.p, "hello world", "buf_append: concatenates");
	is_int(b.len, 11, "buf_append: length");
	buf_consume(&b, 6);
	is_str(b.p, "world", "buf_consume: drops the front, stays NUL-terminated");
	is_int(b.len, 5, "buf_consume: length");

	/* Growth across many doublings keeps every byte. */
	bool same = true;
	for (int i = 0; i < 10000; i++) {
		char c = (char)('a' + i % 26);
		buf_append(&b, &c, 1);
	}
	for (int i = 0; i < 10000; i++)
		same &= b.p[5 + i] == (char)('a' + i % 26);
	ok(same && b.len == 10005 && b.p[b.len] == '\0' && b.cap > b.len, "buf_append: grows, keeps contents");

	/* Appending part of itself must survive the move a growth causes. */
	buf_consume(&b, b.len - 3);
	is_str(b.p, "nop", "buf_consume: keeps the tail");
	for (int i = 0; i < 8; i++)
		buf_append(&b, b.p, b.len);
	ok(b.len == 3 * 256 && strncmp(b.p + b.len - 3, "nop", 3) == 0, "buf_append: from itself");

	buf_consume(&b, b.len + 10);
	ok(b.len == 0 && b.p && b.p[0] == '\0', "buf_consume: more than len empties it");
	buf_free(&b);
	ok(b.p == NULL && b.len == 0 && b.cap == 0, "buf_free: resets");
}

static void test_misc(void)
{
	char *s = xasprintf("%d-%s", 7, "x");
	is_str(s, "7-x", "xasprintf: formats");
	free(s);
	s = xstrndup("abcdef", 3);
	is_str(s, "abc", "xstrndup: cuts");
	free(s);

	int64_t a = now_ms();
	struct timespec ts = {0, 30 * 1000000};
	nanosleep(&ts, NULL);
	int64_t b = now_ms();
	ok(b - a >= 30 && b - a < 5000, "now_ms: advances in milliseconds (%lld)", (long long)(b - a));
}

static void test_log_text(void)
{
	log_init(0, false);
	log_add_secret(SECRET);
	capture_start();
	log_warn("server said: bearer %s rejected", SECRET);
	char *out = capture_end();
	ok(strstr(out, SECRET) == NULL, "log text: secret absent");
	is_str(out, "molecule-connect: warning: server said: bearer [redacted] rejected\n",
	       "log text: prefix, level, [redacted]");
	free(out);

	capture_start();
	log_info("body: line1\nline2\r\n\tend\x1b[31m\n");
	out = capture_end();
	is_str(out, "molecule-connect: info: body: line1\\nline2\\r\\n\\tend\\x1b[31m\n",
	       "log text: control characters escaped, one line");
	free(out);

	/* Redaction happens before the cap on line length cuts anything. */
	char *longmsg = xmalloc(20000);
	memset(longmsg, 'a', 16375);
	strcpy(longmsg + 16375, SECRET);
	capture_start();
	log_error("%s", longmsg);
	out = capture_end();
	ok(strstr(out, "s3cr") == NULL && count_char(out, '\n') == 1 && strlen(out) < 16500,
	   "log text: long line capped without leaking part of a secret");
	free(out);
	free(longmsg);

	/* A secret containing a shorter one is replaced whole. */
	log_add_secret("abcdef");
	log_add_secret("xyzabcdefghij");
	log_add_secret("abc"); /* too short: ordinary text would vanish */
	capture_start();
	log_info("a=xyzabcdefghij b=abcdef c=abc");
	out = capture_end();
	is_str(out, "molecule-connect: info: a=[redacted] b=[redacted] c=abc\n",
	       "log text: overlapping secrets, short secret ignored");
	free(out);
}

static void test_log_json(void)
{
	log_init(0, true);
	capture_start();
	log_error("token %s in \"quotes\"\nand %s", SECRET, SECRET);
	char *out = capture_end();
	ok(strstr(out, SECRET) == NULL, "log json: secret absent");
	ok(count_char(out, '\n') == 1 && out[strlen(out) - 1] == '\n', "log json: exactly one line");

	jv v = jv_parse_sized(out, (int)strlen(out) - 1);
	ok(jv_get_kind(v) == JV_KIND_OBJECT, "log json: the line is a JSON object");
	if (jv_get_kind(v) == JV_KIND_OBJECT) {
		jv level = jv_object_get(jv_copy(v), jv_string("level"));
		jv msg = jv_object_get(jv_copy(v), jv_string("msg"));
		jv ts = jv_object_get(jv_copy(v), jv_string("ts"));
		is_str(jv_get_kind(level) == JV_KIND_STRING ? jv_string_value(level) : NULL, "error",
		       "log json: level");
		is_str(jv_get_kind(msg) == JV_KIND_STRING ? jv_string_value(msg) : NULL,
		       "token [redacted] in \"quotes\"\nand [redacted]", "log json: msg redacted, escapes intact");
		const char *t = jv_get_kind(ts) == JV_KIND_STRING ? jv_string_value(ts) : "";
		/* 2026-04-30T10:15:02.123Z */
		ok(strlen(t) == 24 && t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z',
		   "log json: ts is RFC 3339 UTC with milliseconds (%s)", t);
		jv_free(level);
		jv_free(msg);
		jv_free(ts);
	} else {
		ok(0, "log json: level");
		ok(0, "log json: msg redacted, escapes intact");
		ok(0, "log json: ts is RFC 3339 UTC with milliseconds");
	}
	jv_free(v);
	ok(strncmp(out, "{\"ts\":", 6) == 0, "log json: compact, ts first");
	free(out);
}

static void test_log_levels(void)
{
	log_init(-1, false);
	ok(log_enabled(LV_ERROR) && !log_enabled(LV_WARN) && !log_enabled(LV_INFO),
	   "log levels: quiet keeps errors only");
	capture_start();
	log_warn("w");
	log_info("i");
	log_debug("d");
	log_error("e");
	char *out = capture_end();
	is_str(out, "molecule-connect: error: e\n", "log levels: quiet writes only the error");
	free(out);

	log_init(0, false);
	ok(log_enabled(LV_INFO) && !log_enabled(LV_DEBUG), "log levels: default has info, not debug");
	capture_start();
	log_debug("d");
	log_info("i");
	log_warn("w");
	out = capture_end();
	is_str(out, "molecule-connect: info: i\nmolecule-connect: warning: w\n",
	       "log levels: default writes info and warnings, no debug");
	free(out);

	static const char *const verbose_out[] = {
		"molecule-connect: debug: d 1\n",
		"molecule-connect: debug: d 2\nmolecule-connect: trace: t 2\n",
	};
	for (int v = 1; v <= 2; v++) {
		log_init(v, false);
		capture_start();
		log_debug("d %d", v);
		log_trace("t %d", v);
		out = capture_end();
		is_str(out, verbose_out[v - 1], v == 1 ? "log levels: -v writes debug, not trace" : "log levels: -vv writes trace too");
		free(out);
	}

	log_init(0, false);
	capture_start();
	errno = ENOSPC;
	log_warn("errno test");
	int e = errno;
	free(capture_end());
	is_int(e, ENOSPC, "log: errno preserved across a log call");
}

static void test_log_counts(void)
{
	const struct log_count counts[] = {
		{ .key = "handed_out", .label = "handed out", .value = 12 },
		{ .key = "kept", .label = "kept for later", .value = 0 },
	};
	log_init(0, false);
	capture_start();
	log_counts(LV_INFO, "done", counts, 2);
	log_counts(LV_DEBUG, "hidden", counts, 2);
	char *out = capture_end();
	is_str(out, "molecule-connect: info: done: 12 handed out, 0 kept for later\n", "log counts: text, one line");
	free(out);

	log_init(0, true);
	capture_start();
	log_counts(LV_INFO, "done", counts, 2);
	out = capture_end();
	jv v = jv_parse_sized(out, (int)strlen(out));
	jv msg = json_field(v, "msg"), handed = json_field(v, "handed_out"), kept = json_field(v, "kept");
	ok(jv_get_kind(msg) == JV_KIND_STRING && strcmp(jv_string_value(msg), "done: 12 handed out, 0 kept for later") == 0,
	   "log counts: json msg is the text");
	ok(jv_get_kind(handed) == JV_KIND_NUMBER && jv_number_value(handed) == 12 && jv_get_kind(kept) == JV_KIND_NUMBER &&
		   jv_number_value(kept) == 0,
	   "log counts: json fields are numbers (%s)", out);
	jv_free(msg);
	jv_free(handed);
	jv_free(kept);
	jv_free(v);
	free(out);
	log_init(0, false);
}

static void test_once_per(void)
{
	int64_t last = 0;
	ok(once_per(&last, 5000, 1000) && last == 5000, "once_per: due at first");
	ok(!once_per(&last, 5999, 1000) && last == 5000, "once_per: not again within the period");
	ok(once_per(&last, 6000, 1000) && last == 6000, "once_per: again once the period passed");
}

static void test_fatal(void)
{
	log_init(0, false);
	capture_start();
	pid_t pid = fork();
	if (pid == 0)
		fatal(3, "cannot go on: %s", SECRET);
	int status = 0;
	waitpid(pid, &status, 0);
	char *out = capture_end();
	ok(WIFEXITED(status) && WEXITSTATUS(status) == 3, "fatal: exits with the given status");
	is_str(out, "molecule-connect: error: cannot go on: [redacted]\n", "fatal: logs at error level, redacted");
	free(out);
}

/* json_dump writes what jv_dump_string(v, 0) writes, for every kind of value. */
static void test_json_dump(void)
{
	static const char *cases[] = {
		"null", "true", "false", "0", "-1", "1.5", "1e300", "123456789012", "-0.25",
		"\"\"", "\"plain text\"", "\"quote \\\" and backslash \\\\\"",
		"\"\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f \\u007f\"",
		"\"caf\u00e9 \u65e5\u672c \\ud83d\\ude00 /\"",
		"[]", "{}", "[1,[2,[3,{}]],\"x\"]",
		"{\"b\":1,\"a\":{\"z\":[null,true],\"y\":\"\\n\"},\"\":\"empty key\"}",
		"{\"k\\u0001\\\"\":\"v\"}",
	};
	for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
		jv v = jv_parse(cases[i]);
		jv want = jv_dump_string(jv_copy(v), 0);
		size_t len = 0;
		char *got = json_dump(v, &len);
		is_str(got, jv_string_value(want), cases[i]);
		is_int((long long)len, (long long)strlen(jv_string_value(want)), "json_dump reports the length");
		free(got);
		jv_free(want);
	}
	/* A text of a million characters with specials spread through it. */
	struct buf big = { 0 };
	for (int i = 0; i < 100000; i++)
		buf_append(&big, i % 7 == 0 ? "ab\"c\\d\ne\x01" "f" : "0123456789", 10);
	jv v = jv_string_sized(big.p, (int)big.len);
	jv want = jv_dump_string(jv_copy(v), 0);
	char *got = json_dump(v, NULL);
	ok(strcmp(got, jv_string_value(want)) == 0, "json_dump matches on a 1 MB text with escapes");
	free(got);
	jv_free(want);
	buf_free(&big);
}

int main(void)
{
	test_json_dump();
	test_uuid_valid();
	test_uuid_new();
	test_parse_long();
	test_parse_seconds();
	test_buf();
	test_misc();
	test_log_text();
	test_log_json();
	test_log_levels();
	test_log_counts();
	test_once_per();
	test_fatal();
	return done_testing();
}
