/* sse.c: server-sent events framing: lines, comments, fields, multi-line data, events ended by a blank line; bounded. */
#include <config.h>

#include <string.h>

#include "sse.h"

void sse_init(struct sse *p, size_t cap, sse_event_fn fn, void *ctx)
{
	memset(p, 0, sizeof *p);
	p->cap = cap;
	p->fn = fn;
	p->ctx = ctx;
}

static void event_clear(struct sse *p)
{
	p->data.len = 0;
	if (p->data.p)
		p->data.p[0] = '\0';
	p->has_data = p->data_over = false;
	p->type[0] = '\0';
}

void sse_reset(struct sse *p)
{
	event_clear(p);
	p->line.len = 0;
	p->line_over = p->after_cr = false;
}

void sse_free(struct sse *p)
{
	buf_free(&p->line);
	buf_free(&p->data);
}

static void dispatch(struct sse *p)
{
	if (p->has_data) {
		/* Each data line was followed by '\n': the last one is not part of the data. */
		size_t len = p->data.len;
		if (len > 0 && p->data.p[len - 1] == '\n' && !p->data_over)
			len--;
		if (p->data.p)
			p->data.p[len] = '\0';
		struct sse_event ev = {
			.type = p->type[0] ? p->type : "message",
			.data = p->data.p ? p->data.p : "",
			.len = len,
			.truncated = p->data_over,
		};
		p->fn(p->ctx, &ev);
	}
	event_clear(p);
}

static void add_data(struct sse *p, const char *value, size_t n, bool cut)
{
	p->has_data = true;
	if (p->data_over)
		return;
	if (cut || p->data.len + n + 1 > p->cap) {
		/* What fits is kept, so the callback can still tell what the event was. */
		size_t room = p->cap > p->data.len ? p->cap - p->data.len : 0;
		buf_append(&p->data, value, n < room ? n : room);
		p->data_over = true;
		return;
	}
	buf_append(&p->data, value, n);
	buf_append(&p->data, "\n", 1);
}

/* One whole line (at most cap bytes of it: cut says there was more). */
static void line_done(struct sse *p)
{
	const char *s = p->line.p ? p->line.p : "";
	size_t n = p->line.len;
	bool cut = p->line_over;
	p->line.len = 0;
	p->line_over = false;
	if (n == 0 && !cut) {
		dispatch(p);
		return;
	}
	if (cut)
		p->overlong++;
	if (s[0] == ':') {
		p->comments++;
		return;
	}
	const char *colon = memchr(s, ':', n);
	size_t name_len = colon ? (size_t)(colon - s) : n;
	const char *value = colon ? colon + 1 : s + n;
	if (colon && value < s + n && *value == ' ')
		value++;
	size_t value_len = (size_t)(s + n - value);
	if (name_len == 4 && memcmp(s, "data", 4) == 0) {
		add_data(p, value, value_len, cut);
	} else if (name_len == 5 && memcmp(s, "event", 5) == 0 && !cut) {
		size_t k = value_len < SSE_TYPE_MAX ? value_len : SSE_TYPE_MAX;
		memcpy(p->type, value, k);
		p->type[k] = '\0';
	}
}

void sse_feed(struct sse *p, const char *data, size_t n)
{
	const char *end = data + n;
	while (data < end) {
		if (p->after_cr) {
			p->after_cr = false;
			if (*data == '\n') {
				data++;
				continue;
			}
		}
		/* The next line end, CR or LF, whichever comes first. */
		const char *stop = data;
		while (stop < end && *stop != '\n' && *stop != '\r')
			stop++;
		size_t span = (size_t)(stop - data);
		if (!p->line_over) {
			size_t room = p->cap - p->line.len;
			if (span > room) {
				buf_append(&p->line, data, room);
				p->line_over = true;
			} else {
				buf_append(&p->line, data, span);
			}
		}
		if (stop == end)
			return;
		p->after_cr = *stop == '\r';
		data = stop + 1;
		line_done(p);
	}
}
