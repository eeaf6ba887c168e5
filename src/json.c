/* json.c: compact JSON output, one-line parse errors, safe field access. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "json.h"

char *json_error(jv invalid)
{
	jv msg = jv_invalid_get_msg(invalid);
	char *reason;
	if (jv_get_kind(msg) == JV_KIND_STRING) {
		const char *m = jv_string_value(msg);
		const char *cut = strstr(m, " (while parsing");
		reason = cut ? xstrndup(m, (size_t)(cut - m)) : xstrdup(m);
		for (char *c = reason; *c; c++)
			if (*c == '\n' || *c == '\r')
				*c = ' ';
	} else {
		reason = xstrdup("not valid JSON");
	}
	jv_free(msg);
	return reason;
}

/* ---- compact JSON output ---- */

static void json_write_string(struct buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0;
	buf_append(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *esc = NULL;
		char u[7];
		if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f)
			continue; /* stays in the run */
		switch (c) {
		case '"': esc = "\\\""; break;
		case '\\': esc = "\\\\"; break;
		case '\b': esc = "\\b"; break;
		case '\f': esc = "\\f"; break;
		case '\n': esc = "\\n"; break;
		case '\r': esc = "\\r"; break;
		case '\t': esc = "\\t"; break;
		default:
			u[0] = '\\', u[1] = 'u', u[2] = '0', u[3] = '0';
			u[4] = hex[c >> 4], u[5] = hex[c & 15], u[6] = '\0';
			esc = u;
		}
		buf_append(b, s + run, i - run);
		buf_append(b, esc, strlen(esc));
		run = i + 1;
	}
	buf_append(b, s + run, n - run);
	buf_append(b, "\"", 1);
}

void json_write(struct buf *b, jv v)
{
	switch (jv_get_kind(v)) {
	case JV_KIND_NULL:
		buf_append(b, "null", 4);
		break;
	case JV_KIND_TRUE:
		buf_append(b, "true", 4);
		break;
	case JV_KIND_FALSE:
		buf_append(b, "false", 5);
		break;
	case JV_KIND_STRING:
		json_write_string(b, jv_string_value(v), (size_t)jv_string_length_bytes(jv_copy(v)));
		break;
	case JV_KIND_ARRAY:
		buf_append(b, "[", 1);
		jv_array_foreach(v, i, e) {
			if (i > 0)
				buf_append(b, ",", 1);
			json_write(b, e);
		}
		buf_append(b, "]", 1);
		break;
	case JV_KIND_OBJECT: {
		bool first = true;
		buf_append(b, "{", 1);
		/* libjq's own order (insertion order), as jv_dump_string has it. */
		for (int it = jv_object_iter(v); jv_object_iter_valid(v, it); it = jv_object_iter_next(v, it)) {
			jv key = jv_object_iter_key(v, it);
			if (!first)
				buf_append(b, ",", 1);
			first = false;
			json_write_string(b, jv_string_value(key), (size_t)jv_string_length_bytes(jv_copy(key)));
			buf_append(b, ":", 1);
			json_write(b, jv_object_iter_value(v, it));
			jv_free(key);
		}
		buf_append(b, "}", 1);
		break;
	}
	default: {
		/* Numbers (and anything else): libjq's own formatting. */
		jv d = jv_dump_string(jv_copy(v), 0);
		buf_append(b, jv_string_value(d), (size_t)jv_string_length_bytes(jv_copy(d)));
		jv_free(d);
		break;
	}
	}
	jv_free(v);
}

char *json_dump(jv v, size_t *len)
{
	struct buf b = { 0 };
	json_write(&b, v);
	if (!b.p)
		buf_append(&b, "", 0);
	if (len)
		*len = b.len;
	return b.p;
}

jv json_field(jv obj, const char *key)
{
	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return jv_null();
	jv v = jv_object_get(jv_copy(obj), jv_string(key));
	if (!jv_is_valid(v)) {
		jv_free(v);
		return jv_null();
	}
	return v;
}

bool json_has(jv obj, const char *key)
{
	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return false;
	jv v = jv_object_get(jv_copy(obj), jv_string(key));
	bool has = jv_is_valid(v);
	jv_free(v);
	return has;
}

char *json_string_dup(jv obj, const char *key)
{
	jv v = json_field(obj, key);
	char *s = jv_get_kind(v) == JV_KIND_STRING ? xstrdup(jv_string_value(v)) : NULL;
	jv_free(v);
	return s;
}

bool json_is_uuid(jv v)
{
	return jv_get_kind(v) == JV_KIND_STRING
		&& jv_string_length_bytes(jv_copy(v)) == UUID_LEN
		&& uuid_valid(jv_string_value(v));
}
