/* sse.h: server-sent events framing: lines, comments, fields, multi-line data, events ended by a blank line; bounded. */
#ifndef MC_SSE_H
#define MC_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "util.h"

#define SSE_TYPE_MAX 63

/* One event: its type ("message" unless an "event:" field named one) and its
 * data lines joined with '\n' (NUL-terminated). truncated: the data, or one of
 * its lines, was longer than the parser's cap; data then holds what fitted. */
struct sse_event {
	const char *type;
	const char *data;
	size_t len;
	bool truncated;
};
typedef void (*sse_event_fn)(void *ctx, const struct sse_event *ev);

/*
 * The parser of one stream. Lines end with LF, CRLF or a lone CR, also when the
 * two bytes of a CRLF come in different chunks. A line starting with ':' is a
 * comment. Other lines are "field: value" (one space after the colon is
 * dropped; a line without a colon is a field with an empty value); "data" lines
 * add to the event, "event" names it, every other field ("id", "retry", ...) is
 * ignored. A blank line ends the event: it is passed to the callback when it has
 * data. An event left unfinished when the stream ends is dropped. Memory stays
 * below about twice the cap, whatever the stream sends.
 */
struct sse {
	size_t cap;              /* longest line and longest data kept */
	struct buf line;         /* the line being read (at most cap bytes of it) */
	bool line_over;          /* the line went past the cap: the rest of it is dropped */
	bool after_cr;           /* the last byte was a CR: an LF right after it ends nothing */
	struct buf data;         /* the event's data so far, each line followed by '\n' */
	bool has_data, data_over;
	char type[SSE_TYPE_MAX + 1];
	sse_event_fn fn;
	void *ctx;
	unsigned long comments;  /* comment lines seen (": ping") */
	unsigned long overlong;  /* lines cut at the cap */
};

void sse_init(struct sse *p, size_t cap, sse_event_fn fn, void *ctx);
/* Bytes of the stream, in any chunks. */
void sse_feed(struct sse *p, const char *data, size_t n);
/* A new stream starts: nothing of the last one is carried over. */
void sse_reset(struct sse *p);
void sse_free(struct sse *p);

#endif
