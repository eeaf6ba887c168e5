/* reply.c: reply validation: one parsed reply line to what it asks for. */
#include <config.h>

#include "reply.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "parts.h"
#include "util.h"

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

/* "text" or "parts" as parts: one text part, or the parts as given. */
static jv parts_of(jv text, jv parts, bool has_text)
{
	return has_text ? jv_array_append(jv_array(), parts_text_part_jv(jv_copy(text))) : jv_copy(parts);
}

/* The checks of a "to" line (v not consumed); NULL when fine, else the reason. */
static char *check_send(jv v, bool has_text, bool has_parts)
{
	jv to = json_field(v, "to"), ctx = json_field(v, "context_id");
	char *why = NULL;
	if (jv_get_kind(to) != JV_KIND_STRING ||
	    (strcmp(jv_string_value(to), "canvas") != 0 && !json_is_uuid(to)))
		why = xstrdup("\"to\" must be a workspace id (a lower-case UUID) or \"canvas\"");
	else if (json_has(v, "id"))
		why = xstrdup("a line has both \"to\" (a new message) and \"id\" (a reply)");
	else if (json_has(v, "error") || json_has(v, "retry"))
		why = xasprintf("a new message (\"to\") has no \"%s\"", json_has(v, "error") ? "error" : "retry");
	else if (!has_text && !has_parts)
		why = xstrdup("a new message (\"to\") needs \"text\" or \"parts\"");
	else if (json_has(v, "context_id") && jv_get_kind(ctx) != JV_KIND_STRING)
		why = xstrdup("\"context_id\" must be a string");
	else if (jv_get_kind(ctx) == JV_KIND_STRING &&
		 strlen(jv_string_value(ctx)) != (size_t)jv_string_length_bytes(jv_copy(ctx)))
		why = xstrdup("\"context_id\" contains a NUL character");
	jv_free(to);
	jv_free(ctx);
	return why;
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

	/* A key present with null is not a key left out: {"text":null} is refused. */
	jv id = json_field(v, "id");
	jv text = json_field(v, "text");
	jv parts = json_field(v, "parts");
	jv error = json_field(v, "error");
	jv retry = json_field(v, "retry");
	bool has_id = json_has(v, "id"), has_text = json_has(v, "text"), has_parts = json_has(v, "parts");
	bool has_error = json_has(v, "error");
	/* "retry": false reads as "no retry", so a filter can always emit the key. */
	bool want_retry = jv_get_kind(retry) == JV_KIND_TRUE;
	char *why = NULL;

	bool has_to = json_has(v, "to");

	if (has_to && has_text && jv_get_kind(text) != JV_KIND_STRING)
		why = xstrdup("\"text\" must be a string");
	else if (has_to && has_parts && (why = check_parts(parts)) != NULL)
		;
	else if (has_to && has_text && has_parts)
		why = xstrdup("a new message has both \"text\" and \"parts\"");
	else if (has_to && (why = check_send(v, has_text, has_parts)) != NULL)
		;
	else if (has_to) {
		jv to = json_field(v, "to");
		out->kind = REPLY_SEND;
		out->to = strcmp(jv_string_value(to), "canvas") == 0 ? NULL : xstrdup(jv_string_value(to));
		out->context_id = json_string_dup(v, "context_id");
		jv_free(out->parts);
		out->parts = parts_of(text, parts, has_text);
		jv_free(to);
	} else if (has_id && (jv_get_kind(id) != JV_KIND_STRING || jv_string_length_bytes(jv_copy(id)) == 0))
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
	else if (json_has(v, "retry") && !want_retry && jv_get_kind(retry) != JV_KIND_FALSE)
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

	if (!why && !has_to) {
		out->id = has_id ? xstrdup(jv_string_value(id)) : NULL;
		if (has_text || has_parts) {
			out->kind = has_text ? REPLY_TEXT : REPLY_PARTS;
			jv_free(out->parts);
			out->parts = parts_of(text, parts, has_text);
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
	free(r->to);
	free(r->context_id);
	jv_free(r->parts);
	r->id = NULL;
	r->error = NULL;
	r->to = r->context_id = NULL;
	r->parts = jv_null();
}

const char *reply_kind_name(enum reply_kind kind)
{
	switch (kind) {
	case REPLY_TEXT: return "a text reply";
	case REPLY_PARTS: return "a reply with parts";
	case REPLY_ACK: return "done, no reply";
	case REPLY_ERROR: return "an error reply";
	case REPLY_RETRY: return "hand it out again";
	case REPLY_SEND: return "a new message";
	}
	return "a reply";
}
