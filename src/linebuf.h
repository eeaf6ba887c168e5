/* linebuf.h: a byte stream split into lines without stdio, with a length cap. */
#ifndef MC_LINEBUF_H
#define MC_LINEBUF_H

#include <stdbool.h>
#include <stddef.h>

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

#endif
