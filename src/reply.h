/* reply.h: reply lines from the handler: framing with a length cap, and validation. */
#ifndef MC_REPLY_H
#define MC_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <jv.h>

/* Splits a byte stream into lines without stdio. A line longer than max is
 * reported once (too_long set, line NULL, len = bytes seen so far) and the rest
 * of it, up to the next newline, is discarded. NUL bytes are passed through
 * inside a line (the JSON parser rejects them). A trailing '\r' is stripped
 * (and not counted against max). line is NUL-terminated after len bytes and
 * valid only during the call. Empty lines are passed on with len 0: skipping
 * them is the caller's choice. Memory is bounded by max + 2. */
struct linebuf {
	char *buf;
	size_t len, cap, max;
	bool discarding;
	size_t discarded;
};
typedef void (*line_fn)(void *ctx, const char *line, size_t len, bool too_long);
void linebuf_init(struct linebuf *lb, size_t max);
void linebuf_feed(struct linebuf *lb, const char *data, size_t n, line_fn fn, void *ctx);
/* End of input: a final line without a newline still counts. A line being
 * discarded for length was already reported and is not reported again. */
void linebuf_finish(struct linebuf *lb, line_fn fn, void *ctx);
void linebuf_free(struct linebuf *lb);

enum reply_kind {
	REPLY_TEXT,   /* {"id","text"}: parts holds one text part */
	REPLY_PARTS,  /* {"id","parts":[...]} */
	REPLY_ACK,    /* {"id"}: done, nothing to say */
	REPLY_ERROR,  /* {"id","error":"..."} */
	REPLY_RETRY,  /* {"id","retry":true} */
};

struct reply {
	enum reply_kind kind;
	char *id;      /* NULL: answers the oldest unanswered message */
	jv parts;      /* TEXT/PARTS: array of A2A parts; else jv_null() */
	char *error;   /* ERROR: the handler's message; else NULL */
};

/* Validates one parsed reply value (consumed). 0 and *out filled, or -1 and *err
 * set to a one-line reason (caller frees); *out is always safe to reply_free. Rules: must be an object; "id", when
 * present, a non-empty string; "text" a string; "parts" a non-empty array of
 * objects; "error" a string; "retry" true; "text" and "parts" not both;
 * "error"/"retry" exclusive with text/parts. Unknown keys are ignored.
 * "retry": false is the same as no "retry". A reply without "id" must carry
 * "text", "parts" or "error". An invalid v (a parse error) gives its message. */
int reply_parse(jv v, struct reply *out, char **err);
void reply_free(struct reply *r);

#endif
