/* rows.c: activity rows: the answer parsed, put in the order they happened, and made message lines. */
#include <config.h>

#include "rows.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "parts.h"
#include "util.h"

/* ---- the answer ------------------------------------------------------- */

jv rows_parse(const char *body, size_t len)
{
	if (len > (size_t)0x7fffffff)
		return jv_invalid_with_msg(jv_string("activity answer too large"));
	jv v = jv_parse_sized(body, (int)len);
	if (!jv_is_valid(v)) {
		char *why = json_error(v);
		jv out = jv_invalid_with_msg(jv_string_fmt("activity answer is not JSON (%s)", why));
		free(why);
		return out;
	}
	if (jv_get_kind(v) != JV_KIND_ARRAY) {
		jv out = jv_invalid_with_msg(jv_string_fmt("activity answer is a JSON %s, not an array",
							   jv_kind_name(jv_get_kind(v))));
		jv_free(v);
		return out;
	}
	return v;
}

/* ---- rows to messages ------------------------------------------------- */

static jv string_or_null(jv v /* consumed */)
{
	if (jv_get_kind(v) == JV_KIND_STRING)
		return v;
	jv_free(v);
	return jv_null();
}

/* A short printable rendering of a bad value for an error message. */
static jv describe(jv v /* not consumed */)
{
	char tmp[64];
	jv_dump_string_trunc(jv_copy(v), tmp, sizeof tmp);
	/* The cut falls after a byte, maybe inside a character: drop what is left
	 * of that character, or the message would show U+FFFD before the dots. */
	size_t n = strlen(tmp);
	if (n == sizeof tmp - 1 && memcmp(tmp + n - 3, "...", 3) == 0) {
		size_t end = n - 3, start = end;
		while (start > 0 && ((unsigned char)tmp[start - 1] & 0xc0) == 0x80)
			start--;
		if (start > 0 && ((unsigned char)tmp[start - 1] & 0xc0) == 0xc0) {
			unsigned char lead = (unsigned char)tmp[--start];
			size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
			if (end - start < want)
				memcpy(tmp + start, "...", 4);
		}
	}
	return jv_string(tmp);
}

jv rows_message(jv row, const char *own_id)
{
	if (jv_get_kind(row) != JV_KIND_OBJECT) {
		jv_free(row);
		return jv_invalid_with_msg(jv_string("activity row is not a JSON object"));
	}
	jv id = json_field(row, "id");
	if (!json_is_uuid(id)) {
		jv d = describe(id);
		jv msg = jv_string_fmt("activity row id is not a UUID: %s", jv_string_value(d));
		jv_free(d);
		jv_free(id);
		jv_free(row);
		return jv_invalid_with_msg(msg);
	}
	jv source = json_field(row, "source_id");
	if (jv_get_kind(source) != JV_KIND_NULL && !json_is_uuid(source)) {
		jv d = describe(source);
		jv msg = jv_string_fmt("activity row %s: source_id is neither a UUID nor null: %s",
			jv_string_value(id), jv_string_value(d));
		jv_free(d);
		jv_free(source);
		jv_free(id);
		jv_free(row);
		return jv_invalid_with_msg(msg);
	}
	bool canvas = jv_get_kind(source) == JV_KIND_NULL;

	/* request_body is absent when the platform has none; keep whatever is
	 * there, even if it is not an object, since nothing sent is dropped. */
	jv request = json_field(row, "request_body");
	jv params = json_field(request, "params");
	jv message = json_field(params, "message");
	jv parts = json_field(message, "parts");
	if (jv_get_kind(parts) != JV_KIND_ARRAY) {
		jv_free(parts);
		parts = jv_array();
	}

	/* Built key by key: jv objects keep insertion order, which fixes the
	 * order of the keys on the output line. */
	jv out = jv_object();
	out = jv_object_set(out, jv_string("id"), id);
	out = jv_object_set(out, jv_string("workspace_id"), own_id ? jv_string(own_id) : jv_null());
	out = jv_object_set(out, jv_string("source_id"), source);
	out = jv_object_set(out, jv_string("origin"), jv_string(canvas ? "canvas" : "agent"));
	out = jv_object_set(out, jv_string("method"), string_or_null(json_field(row, "method")));
	out = jv_object_set(out, jv_string("text"), parts_text_jv(parts));
	out = jv_object_set(out, jv_string("parts"), parts);
	out = jv_object_set(out, jv_string("message_id"), string_or_null(json_field(message, "messageId")));
	out = jv_object_set(out, jv_string("context_id"), string_or_null(json_field(message, "contextId")));
	out = jv_object_set(out, jv_string("task_id"), string_or_null(json_field(message, "taskId")));
	out = jv_object_set(out, jv_string("created_at"), string_or_null(json_field(row, "created_at")));
	out = jv_object_set(out, jv_string("request"), request);
	jv_free(message);
	jv_free(params);
	jv_free(row);
	return out;
}

/* ---- ordering --------------------------------------------------------- */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Length of "YYYY-MM-DDTHH:MM:SS" when s starts with that shape, else 0. */
static size_t whole_seconds_len(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:dd";
	for (size_t i = 0; i < sizeof shape - 1; i++) {
		char c = s[i];
		if (shape[i] == 'd' ? !is_digit(c) : shape[i] == 'T' ? (c != 'T' && c != 't' && c != ' ') : c != shape[i])
			return 0;
	}
	return sizeof shape - 1;
}

int rows_timestamp_cmp(const char *a, const char *b)
{
	/* Go's RFC 3339 output drops trailing zeros of the fraction, so
	 * "...:02Z" < "...:02.5Z" and "...:02.12Z" < "...:02.123Z", which a plain
	 * strcmp gets wrong. Compare the whole seconds, then the fractions as
	 * if zero-padded, then what follows (the zone, the same in practice). */
	size_t wa = whole_seconds_len(a), wb = whole_seconds_len(b);
	if (!wa || !wb)
		return strcmp(a, b);
	int c = memcmp(a, b, wa);
	if (c)
		return c;
	a += wa;
	b += wb;
	if (*a == '.')
		a++;
	if (*b == '.')
		b++;
	while (is_digit(*a) || is_digit(*b)) {
		char da = is_digit(*a) ? *a++ : '0';
		char db = is_digit(*b) ? *b++ : '0';
		if (da != db)
			return da < db ? -1 : 1;
	}
	return strcmp(a, b);
}

struct sort_item {
	jv row;
	jv created_at; /* string, or null */
	size_t index;
};

static int sort_item_cmp(const void *pa, const void *pb)
{
	const struct sort_item *a = pa, *b = pb;
	bool ha = jv_get_kind(a->created_at) == JV_KIND_STRING;
	bool hb = jv_get_kind(b->created_at) == JV_KIND_STRING;
	int c = 0;
	if (ha != hb)
		c = ha ? 1 : -1; /* rows without a timestamp first */
	else if (ha)
		c = rows_timestamp_cmp(jv_string_value(a->created_at), jv_string_value(b->created_at));
	if (c == 0) /* qsort is not stable: the input position breaks ties */
		c = a->index < b->index ? -1 : a->index > b->index ? 1 : 0;
	return c;
}

jv rows_sort(jv rows)
{
	if (jv_get_kind(rows) != JV_KIND_ARRAY) {
		jv_free(rows);
		return jv_array();
	}
	int n = jv_array_length(jv_copy(rows));
	if (n < 2)
		return rows;
	struct sort_item *items = xcalloc((size_t)n, sizeof *items);
	for (int i = 0; i < n; i++) {
		items[i].row = jv_array_get(jv_copy(rows), i);
		items[i].created_at = string_or_null(json_field(items[i].row, "created_at"));
		items[i].index = (size_t)i;
	}
	jv_free(rows);
	qsort(items, (size_t)n, sizeof *items, sort_item_cmp);
	jv sorted = jv_array_sized(n);
	for (int i = 0; i < n; i++) {
		sorted = jv_array_append(sorted, items[i].row);
		jv_free(items[i].created_at);
	}
	free(items);
	return sorted;
}

jv rows_oldest_first(jv rows, bool replay)
{
	/* After a cursor the platform answers oldest first; a replay by time
	 * (no cursor yet) comes newest first by contract. */
	return replay ? rows_sort(rows) : rows;
}
