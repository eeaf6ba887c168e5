/* parts.c: A2A message parts: kind, text, and text part construction. */
#include <config.h>

#include "parts.h"

#include <string.h>

#include "json.h"
#include "util.h"

const char *parts_kind(jv part)
{
	const char *kind = NULL;
	jv k = json_field(part, "kind");
	if (jv_get_kind(k) != JV_KIND_STRING) {
		jv_free(k);
		k = json_field(part, "type");
	}
	if (jv_get_kind(k) == JV_KIND_STRING) {
		/* part keeps a reference to the string, so the pointer stays valid. */
		kind = jv_string_value(k);
	}
	jv_free(k);
	return kind;
}

jv parts_text_part_jv(jv text)
{
	jv part = jv_object_set(jv_object(), jv_string("kind"), jv_string("text"));
	return jv_object_set(part, jv_string("text"), text);
}

jv parts_text_part(const char *text)
{
	return parts_text_part_jv(jv_string(text));
}

jv parts_text_jv(jv parts)
{
	jv text = jv_string("");
	if (jv_get_kind(parts) != JV_KIND_ARRAY)
		return text;
	int n = jv_array_length(jv_copy(parts));
	int joined = 0;
	/* One text part, the usual case, is shared rather than copied; more are
	 * joined in a buffer (jv_string_concat doubles its allocation). */
	struct buf many = { 0 };
	for (int i = 0; i < n; i++) {
		jv part = jv_array_get(jv_copy(parts), i);
		const char *kind = parts_kind(part);
		if (kind && strcmp(kind, "text") == 0) {
			jv t = json_field(part, "text");
			if (jv_get_kind(t) == JV_KIND_STRING) {
				if (joined++ == 0) {
					jv_free(text);
					text = t;
				} else {
					if (joined == 2)
						buf_append(&many, jv_string_value(text),
							   (size_t)jv_string_length_bytes(jv_copy(text)));
					buf_append(&many, "\n", 1);
					buf_append(&many, jv_string_value(t), (size_t)jv_string_length_bytes(jv_copy(t)));
					jv_free(t);
				}
			} else {
				jv_free(t);
			}
		}
		jv_free(part);
	}
	if (joined > 1) {
		jv_free(text);
		text = jv_string_sized(many.p, (int)many.len);
	}
	buf_free(&many);
	return text;
}

char *parts_text(jv parts)
{
	jv text = parts_text_jv(parts);
	char *s = xstrdup(jv_string_value(text));
	jv_free(text);
	return s;
}
