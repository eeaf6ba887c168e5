/* linebuf.c: line framing of a byte stream with a length cap. */
#include <config.h>

#include "linebuf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void linebuf_init(struct linebuf *lb, size_t max)
{
	memset(lb, 0, sizeof *lb);
	/* The buffer holds max bytes, a '\r' that may still be stripped, and a NUL. */
	lb->max = max > SIZE_MAX - 2 ? SIZE_MAX - 2 : max;
}

/* Appends to the partial line. The caller has checked that the result fits
 * in max + 1 bytes, so the buffer never grows past max + 2. */
static void lb_append(struct linebuf *lb, const char *data, size_t n)
{
	size_t need = lb->len + n + 1;
	if (need > lb->cap) {
		size_t cap = lb->cap ? lb->cap : 256;
		while (cap < need)
			cap = cap > (lb->max + 2) / 2 ? lb->max + 2 : cap * 2;
		lb->buf = xrealloc(lb->buf, cap);
		lb->cap = cap;
	}
	if (n)
		memcpy(lb->buf + lb->len, data, n);
	lb->len += n;
	lb->buf[lb->len] = '\0';
}

/* The last byte of the partial line followed by seg[0..n), or -1 when empty. */
static int last_byte(const struct linebuf *lb, const char *seg, size_t n)
{
	if (n)
		return (unsigned char)seg[n - 1];
	if (lb->len)
		return (unsigned char)lb->buf[lb->len - 1];
	return -1;
}

/* Whether the partial line plus seg[0..n) can still be a line of at most max
 * bytes. A line is measured after its '\r' is stripped, so a CRLF line of
 * exactly max bytes is accepted: one byte over is allowed only if it is a '\r'
 * (if more follows, the next call sees max + 2 and gives up). */
static bool line_fits(const struct linebuf *lb, const char *seg, size_t n)
{
	size_t total = lb->len + n;
	if (total <= lb->max)
		return true;
	if (total == lb->max + 1 && last_byte(lb, seg, n) == '\r')
		return true;
	return false;
}

/* Hands the complete buffered line to fn (NUL-terminated, '\r' stripped). */
static void lb_emit(struct linebuf *lb, line_fn fn, void *ctx)
{
	size_t len = lb->len;
	if (len && lb->buf[len - 1] == '\r')
		len--;
	lb->len = 0;
	if (!lb->buf) {
		fn(ctx, "", 0, false);
		return;
	}
	lb->buf[len] = '\0';
	fn(ctx, lb->buf, len, false);
}

void linebuf_feed(struct linebuf *lb, const char *data, size_t n, line_fn fn, void *ctx)
{
	while (n > 0) {
		const char *nl = memchr(data, '\n', n);
		size_t seg = nl ? (size_t)(nl - data) : n;
		size_t used = nl ? seg + 1 : n;

		if (lb->discarding) {
			lb->discarded += seg;
			if (nl)
				lb->discarding = false; /* the overlong line ends here */
		} else if (line_fits(lb, data, seg)) {
			lb_append(lb, data, seg);
			if (nl)
				lb_emit(lb, fn, ctx);
		} else {
			/* Report as soon as the cap is passed, so a line that never
			 * ends is still reported, and keep nothing of it. */
			size_t seen = lb->len + seg;
			lb->len = 0;
			if (!nl) {
				lb->discarding = true;
				lb->discarded = seen;
			}
			fn(ctx, NULL, seen, true);
		}
		data += used;
		n -= used;
	}
}

void linebuf_finish(struct linebuf *lb, line_fn fn, void *ctx)
{
	if (lb->discarding) {
		/* Already reported when it went over the cap. */
		lb->discarding = false;
		lb->discarded = 0;
		return;
	}
	if (lb->len > 0)
		lb_emit(lb, fn, ctx);
}

void linebuf_free(struct linebuf *lb)
{
	free(lb->buf);
	lb->buf = NULL;
	lb->len = lb->cap = 0;
	lb->discarding = false;
	lb->discarded = 0;
}
