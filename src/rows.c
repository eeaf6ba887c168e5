/* rows.c: activity rows: the answer parsed, what each row is, put in the order they happened, and made message lines. */
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

/* ---- what a row is ---------------------------------------------------- */

static bool str_is(jv v /* consumed */, const char *s)
{
	bool eq = jv_get_kind(v) == JV_KIND_STRING && strcmp(jv_string_value(v), s) == 0;
	jv_free(v);
	return eq;
}

enum row_kind rows_kind(jv row, const char *own_id)
{
	jv method = json_field(row, "method");
	const char *m = jv_get_kind(method) == JV_KIND_STRING ? jv_string_value(method) : NULL;
	enum row_kind k;
	if (m && strcmp(m, "notify") == 0)
		k = ROW_ECHO;
	else if ((m && strcmp(m, "delegate_result") == 0) || (own_id && str_is(json_field(row, "source_id"), own_id)))
		k = ROW_OWN;
	else if (m && strcmp(m, "chat_upload_receive") == 0)
		k = ROW_UPLOAD;
	else if (!m || strcmp(m, "message/send") == 0)
		k = ROW_MESSAGE;
	else
		k = ROW_UNSERVABLE;
	jv_free(method);
	return k;
}

/* The string at metadata[key], NULL when absent; lives as long as metadata. */
static const char *meta_str(jv metadata, const char *key, jv *hold)
{
	*hold = json_field(metadata, key);
	return jv_get_kind(*hold) == JV_KIND_STRING ? jv_string_value(*hold) : NULL;
}

/* metadata (not consumed) marks a turn the platform started. */
static bool system_metadata(jv metadata)
{
	jv h1, h2;
	const char *type = meta_str(metadata, "source_type", &h1);
	const char *source = meta_str(metadata, "source", &h2);
	bool sys = (type && strncmp(type, "self-", 5) == 0) || (source && strcmp(source, "canvas_user") != 0);
	jv_free(h1);
	jv_free(h2);
	return sys;
}

bool rows_is_system(jv row)
{
	jv request = json_field(row, "request_body");
	jv params = json_field(request, "params");
	jv pmeta = json_field(params, "metadata");
	jv message = json_field(params, "message");
	jv mmeta = json_field(message, "metadata");
	bool sys = system_metadata(pmeta) || system_metadata(mmeta);
	jv_free(mmeta);
	jv_free(message);
	jv_free(pmeta);
	jv_free(params);
	jv_free(request);
	return sys;
}

/* ---- rows to messages ------------------------------------------------- */

static jv string_or_null(jv v /* consumed */)
{
	if (jv_get_kind(v) == JV_KIND_STRING)
		return v;
	jv_free(v);
	return jv_null();
}

jv rows_describe(jv v)
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
		jv d = rows_describe(id);
		jv msg = jv_string_fmt("activity row id is not a UUID: %s", jv_string_value(d));
		jv_free(d);
		jv_free(id);
		jv_free(row);
		return jv_invalid_with_msg(msg);
	}
	jv source = json_field(row, "source_id");
	if (jv_get_kind(source) != JV_KIND_NULL && !json_is_uuid(source)) {
		jv d = rows_describe(source);
		jv msg = jv_string_fmt("activity row %s: source_id is neither a UUID nor null: %s",
			jv_string_value(id), jv_string_value(d));
		jv_free(d);
		jv_free(source);
		jv_free(id);
		jv_free(row);
		return jv_invalid_with_msg(msg);
	}
	const char *origin = jv_get_kind(source) != JV_KIND_NULL ? "agent" : rows_is_system(row) ? "system" : "canvas";

	/* request_body is absent when the platform has none; keep whatever is
	 * there, even if it is not an object, since nothing sent is dropped. */
	jv request = json_field(row, "request_body");
	jv params = json_field(request, "params");
	jv message = json_field(params, "message");
	jv metadata = json_field(message, "metadata");
	jv parts = json_field(message, "parts");
	if (jv_get_kind(parts) != JV_KIND_ARRAY) {
		jv_free(parts);
		parts = jv_array();
	}
	jv seq = json_field(row, "seq");
	if (rows_seq(row) < 0) {
		jv_free(seq);
		seq = jv_null();
	}

	/* Built key by key: jv objects keep insertion order, which fixes the
	 * order of the keys on the output line. */
	jv out = jv_object();
	out = jv_object_set(out, jv_string("id"), id);
	out = jv_object_set(out, jv_string("seq"), seq);
	out = jv_object_set(out, jv_string("workspace_id"), own_id ? jv_string(own_id) : jv_null());
	out = jv_object_set(out, jv_string("source_id"), source);
	out = jv_object_set(out, jv_string("origin"), jv_string(origin));
	out = jv_object_set(out, jv_string("peer_name"), string_or_null(json_field(row, "peer_name")));
	out = jv_object_set(out, jv_string("peer_role"), string_or_null(json_field(row, "peer_role")));
	out = jv_object_set(out, jv_string("method"), string_or_null(json_field(row, "method")));
	out = jv_object_set(out, jv_string("text"), parts_text_jv(parts));
	out = jv_object_set(out, jv_string("parts"), parts);
	out = jv_object_set(out, jv_string("files"), jv_array());
	out = jv_object_set(out, jv_string("message_id"), string_or_null(json_field(message, "messageId")));
	out = jv_object_set(out, jv_string("context_id"), string_or_null(json_field(message, "contextId")));
	out = jv_object_set(out, jv_string("delegation_id"), string_or_null(json_field(metadata, "delegation_id")));
	out = jv_object_set(out, jv_string("created_at"), string_or_null(json_field(row, "created_at")));
	out = jv_object_set(out, jv_string("request"), request);
	jv_free(metadata);
	jv_free(message);
	jv_free(params);
	jv_free(row);
	return out;
}

/* ---- ordering --------------------------------------------------------- */

/* 2^53: the largest whole number a JSON number (a double) holds exactly. */
#define SEQ_MAX 9007199254740992.0

int64_t rows_seq_number(jv v)
{
	if (jv_get_kind(v) != JV_KIND_NUMBER)
		return -1;
	double d = jv_number_value(v);
	return d >= 0 && d <= SEQ_MAX && d == (double)(int64_t)d ? (int64_t)d : -1;
}

int64_t rows_seq(jv row)
{
	jv v = json_field(row, "seq");
	int64_t seq = rows_seq_number(v);
	jv_free(v);
	return seq;
}

struct row_key rows_key(jv row)
{
	struct row_key k = { .seq = rows_seq(row) };
	jv at = json_field(row, "created_at");
	k.has_at = jv_get_kind(at) == JV_KIND_STRING && ts_parse(jv_string_value(at), &k.at);
	jv_free(at);
	return k;
}

int rows_key_cmp(const struct row_key *a, const struct row_key *b)
{
	if (a->has_at != b->has_at)
		return a->has_at ? 1 : -1; /* rows without a time first */
	if (a->has_at) {
		int c = ts_cmp(a->at, b->at);
		if (c)
			return c;
	}
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

struct sort_item {
	jv row;
	struct row_key key;
	size_t index;
};

static int sort_item_cmp(const void *pa, const void *pb)
{
	const struct sort_item *a = pa, *b = pb;
	int c = rows_key_cmp(&a->key, &b->key);
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
		items[i].key = rows_key(items[i].row);
		items[i].index = (size_t)i;
	}
	jv_free(rows);
	qsort(items, (size_t)n, sizeof *items, sort_item_cmp);
	jv sorted = jv_array_sized(n);
	for (int i = 0; i < n; i++)
		sorted = jv_array_append(sorted, items[i].row);
	free(items);
	return sorted;
}

jv rows_oldest_first(jv rows, bool replay)
{
	/* After a cursor the platform answers oldest first; a replay by time
	 * (no cursor yet) comes newest first by contract. */
	return replay ? rows_sort(rows) : rows;
}
