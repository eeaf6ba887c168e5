/* reply.c: reply lines from the handler: line framing with a length cap, reply validation. */
#include <config.h>

#include "reply.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "parts.h"
#include "util.h"

/* ---- line framing ---------------------------------------------------- */

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

/* ---- reply validation ------------------------------------------------- */

/* obj[key] (obj not consumed), or jv_invalid() when the key is absent. */
static jv get_key(jv obj, const char *key)
{
	return jv_object_get(jv_copy(obj), jv_string(key));
}

/* NULL when parts is acceptable, else the reason (caller frees). */
static char *check_parts(jv parts /* not consumed */)
{
	if (jv_get_kind(parts) != JV_KIND_ARRAY || jv_array_length(jv_copy(parts)) == 0)
		return xstrdup("\"parts\" must be a non-empty array of objects");
	int n = jv_array_length(jv_copy(parts));
	for (int i = 0; i < n; i++) {
		jv part = jv_array_get(jv_copy(parts), i);
		char *why = NULL;
		if (jv_get_kind(part) != JV_KIND_OBJECT)
			why = xstrdup("\"parts\" must be a non-empty array of objects");
		else if (!parts_kind(part))
			why = xasprintf("\"parts\"[%d] has no \"kind\" string", i);
		jv_free(part);
		if (why)
			return why;
	}
	return NULL;
}

static bool present(jv v)
{
	return jv_get_kind(v) != JV_KIND_INVALID;
}

int reply_parse(jv v, struct reply *out, char **err)
{
	*out = (struct reply){ .kind = REPLY_ACK, .id = NULL, .parts = jv_null(), .error = NULL };
	*err = NULL;

	if (jv_get_kind(v) == JV_KIND_INVALID) {
		jv msg = jv_invalid_get_msg(v);
		*err = jv_get_kind(msg) == JV_KIND_STRING
			? xasprintf("reply is not JSON: %s", jv_string_value(msg))
			: xstrdup("reply is not JSON");
		jv_free(msg);
		return -1;
	}
	if (jv_get_kind(v) != JV_KIND_OBJECT) {
		jv_free(v);
		*err = xstrdup("reply is not a JSON object");
		return -1;
	}

	jv id = get_key(v, "id");
	jv text = get_key(v, "text");
	jv parts = get_key(v, "parts");
	jv error = get_key(v, "error");
	jv retry = get_key(v, "retry");
	bool has_id = present(id), has_text = present(text), has_parts = present(parts);
	bool has_error = present(error);
	/* "retry": false reads as "no retry", so a filter can always emit the key. */
	bool want_retry = jv_get_kind(retry) == JV_KIND_TRUE;
	char *why = NULL;

	if (has_id && (jv_get_kind(id) != JV_KIND_STRING || jv_string_length_bytes(jv_copy(id)) == 0))
		why = xstrdup("\"id\" must be a non-empty string");
	else if (has_id && strlen(jv_string_value(id)) != (size_t)jv_string_length_bytes(jv_copy(id)))
		/* An id with a NUL in it could never name a message, and would
		 * otherwise be cut short at the NUL. */
		why = xstrdup("\"id\" contains a NUL character");
	else if (has_text && jv_get_kind(text) != JV_KIND_STRING)
		why = xstrdup("\"text\" must be a string");
	else if (has_parts && (why = check_parts(parts)) != NULL)
		;
	else if (has_error && jv_get_kind(error) != JV_KIND_STRING)
		why = xstrdup("\"error\" must be a string");
	else if (present(retry) && !want_retry && jv_get_kind(retry) != JV_KIND_FALSE)
		why = xstrdup("\"retry\" must be true or false");
	else if (has_text && has_parts)
		why = xstrdup("reply has both \"text\" and \"parts\"");
	else if (has_error && (has_text || has_parts))
		why = xasprintf("reply has both \"error\" and \"%s\"", has_text ? "text" : "parts");
	else if (want_retry && (has_text || has_parts || has_error))
		why = xasprintf("reply has both \"retry\" and \"%s\"",
			has_text ? "text" : has_parts ? "parts" : "error");
	else if (!has_id && want_retry)
		why = xstrdup("\"retry\" needs an \"id\"");
	else if (!has_id && !has_text && !has_parts && !has_error)
		why = xstrdup("reply without \"id\" needs \"text\", \"parts\" or \"error\"");

	if (!why) {
		out->id = has_id ? xstrdup(jv_string_value(id)) : NULL;
		if (has_text) {
			out->kind = REPLY_TEXT;
			jv_free(out->parts);
			out->parts = jv_array_append(jv_array(), parts_text_part_jv(jv_copy(text)));
		} else if (has_parts) {
			out->kind = REPLY_PARTS;
			jv_free(out->parts);
			out->parts = jv_copy(parts);
		} else if (has_error) {
			out->kind = REPLY_ERROR;
			out->error = xstrdup(jv_string_value(error));
		} else if (want_retry) {
			out->kind = REPLY_RETRY;
		} else {
			out->kind = REPLY_ACK;
		}
	}

	jv_free(id);
	jv_free(text);
	jv_free(parts);
	jv_free(error);
	jv_free(retry);
	jv_free(v);
	if (why) {
		*err = why;
		return -1;
	}
	return 0;
}

void reply_free(struct reply *r)
{
	free(r->id);
	free(r->error);
	jv_free(r->parts);
	r->id = NULL;
	r->error = NULL;
	r->parts = jv_null();
}
