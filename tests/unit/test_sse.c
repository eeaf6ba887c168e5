/* test_sse.c: server-sent events framing: line ends, comments, fields, multi-line data, the cap, chunking. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "sse.h"

/* What the callback saw: "type|data" per event, ";"-separated, "!" after a truncated one. */
struct seen {
	struct buf log;
	int n;
};

static void on_event(void *ctx, const struct sse_event *ev)
{
	struct seen *s = ctx;
	if (s->n++)
		buf_append(&s->log, ";", 1);
	buf_append(&s->log, ev->type, strlen(ev->type));
	buf_append(&s->log, "|", 1);
	buf_append(&s->log, ev->data, ev->len);
	if (ev->truncated)
		buf_append(&s->log, "!", 1);
	/* The data is NUL-terminated where its length says. */
	if (ev->data[ev->len] != '\0')
		buf_append(&s->log, "<no NUL>", 8);
}

/* Feeds text in chunks of `chunk` bytes (0: all at once); returns what was seen. */
static char *run(const char *text, size_t cap, size_t chunk, unsigned long *comments)
{
	struct seen s = { 0 };
	struct sse p;
	sse_init(&p, cap, on_event, &s);
	size_t n = strlen(text);
	if (chunk == 0)
		chunk = n ? n : 1;
	for (size_t off = 0; off < n; off += chunk)
		sse_feed(&p, text + off, n - off < chunk ? n - off : chunk);
	if (comments)
		*comments = p.comments;
	sse_free(&p);
	char *out = xstrdup(s.log.p ? s.log.p : "");
	buf_free(&s.log);
	return out;
}

static void check(const char *text, size_t cap, const char *want, const char *name)
{
	/* Whatever the chunking, the same events. */
	static const size_t chunks[] = { 0, 1, 2, 3, 7 };
	for (size_t i = 0; i < sizeof chunks / sizeof *chunks; i++) {
		char *got = run(text, cap, chunks[i], NULL);
		char what[200];
		snprintf(what, sizeof what, "%s (chunks of %zu)", name, chunks[i]);
		is_str(got, want, what);
		free(got);
	}
}

int main(void)
{
	check("data: {\"type\":\"ACTIVITY_LOGGED\"}\n\n", 1024, "message|{\"type\":\"ACTIVITY_LOGGED\"}",
	      "one data line, ended by a blank line");
	check("data: a\n", 1024, "", "an event not ended by a blank line is not passed on");
	check(": ping\n\n", 1024, "", "a comment alone is no event");
	check(": ping\n\ndata: x\n\n", 1024, "message|x", "the platform's ping, then an event");
	check("data: one\ndata: two\n\n", 1024, "message|one\ntwo", "data lines joined with a newline");
	check("data:x\n\n", 1024, "message|x", "no space after the colon");
	check("data:  x\n\n", 1024, "message| x", "only one space is dropped");
	check("data\n\n", 1024, "message|", "a data line without a colon: empty data, still an event");
	check("data: a\r\n\r\ndata: b\r\rdata: c\n\n", 1024, "message|a;message|b;message|c",
	      "CRLF, CR and LF line ends");
	check("event: update\ndata: x\n\ndata: y\n\n", 1024, "update|x;message|y",
	      "an event type applies to its own event only");
	check("id: 7\nretry: 10\nfoo: bar\ndata: x\n\n", 1024, "message|x", "other fields are ignored");
	check("\n\n\ndata: x\n\n\n", 1024, "message|x", "blank lines without data dispatch nothing");
	check(":data: x\n\n", 1024, "", "a comment that looks like data is a comment");

	/* The cap. */
	check("data: 0123456789abcdef\n\ndata: ok\n\n", 10, "message|0123!;message|ok",
	      "a line over the cap: the event is passed on truncated, the next one whole");
	check("data: 01234\ndata: 56789\n\n", 11, "message|01234\n56789!",
	      "data over the cap across lines: truncated");
	check("foo: 0123456789abcdef\ndata: x\n\n", 8, "message|x", "an overlong other field is dropped");
	check(": 0123456789abcdef0123456789\ndata: x\n\n", 8, "message|x", "an overlong comment is dropped");

	unsigned long comments = 0;
	free(run(": ping\n\n: two\n", 1024, 1, &comments));
	is_int(comments, 2, "comments are counted");

	/* A reset drops a half-read event and line. */
	struct seen s = { 0 };
	struct sse p;
	sse_init(&p, 64, on_event, &s);
	sse_feed(&p, "data: half\ndata: li", 19);
	sse_reset(&p);
	sse_feed(&p, "ne\n\ndata: new\n\n", 15);
	is_str(s.log.p, "message|new", "after a reset only the new stream's events");
	sse_feed(&p, "data: a\r", 8);
	sse_reset(&p);
	sse_feed(&p, "\ndata: b\n\n", 10);
	is_str(s.log.p, "message|new;message|b", "a CR before a reset does not swallow the next LF");
	sse_free(&p);
	buf_free(&s.log);
	return done_testing();
}
