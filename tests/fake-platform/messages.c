/* messages.c: messages into workspaces: /a2a (normalised, deduplicated, answered as the target's mode does) and /notify. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "fake.h"

/* Parts with "type" but no "kind" get "kind": the platform stores the A2A v0.3 key. */
static jv parts_with_kind(jv parts)
{
	jv out = jv_array();
	jv_array_foreach(parts, i, part) {
		if (jv_get_kind(part) == JV_KIND_OBJECT && !json_has(part, "kind") &&
		    json_has(part, "type")) {
			jv type = json_field(part, "type");
			part = jv_object_delete(part, jv_string("type"));
			part = jv_object_set(part, jv_string("kind"), type);
		}
		out = jv_array_append(out, part);
	}
	jv_free(parts);
	return out;
}

/*
 * What the platform stores of a message: in a JSON-RPC envelope, with a messageId, a
 * role (user unless given) and parts (made from a v0.2 "content" string when that is
 * all there is). message is consumed; on a refusal *error says why and it returns an
 * invalid jv.
 */
static jv message_normalised(jv message, const char **error)
{
	if (!json_has(message, "messageId")) {
		char id[UUID_LEN + 1];
		uuid_new(id);
		message = jv_object_set(message, jv_string("messageId"), jv_string(id));
	}
	if (!json_has(message, "role"))
		message = jv_object_set(message, jv_string("role"), jv_string("user"));
	if (!json_has(message, "parts") && json_has(message, "content")) {
		jv content = json_field(message, "content");
		message = jv_object_delete(message, jv_string("content"));
		if (jv_get_kind(content) == JV_KIND_STRING) {
			jv part = jv_object_set(jv_object(), jv_string("kind"), jv_string("text"));
			part = jv_object_set(part, jv_string("text"), content);
			message = jv_object_set(message, jv_string("parts"), jv_array_append(jv_array(), part));
		} else if (jv_get_kind(content) == JV_KIND_ARRAY) {
			message = jv_object_set(message, jv_string("parts"), content);
		} else {
			jv_free(content);
			jv_free(message);
			*error = "invalid params.message.content type";
			return jv_invalid();
		}
	}
	jv parts = json_field(message, "parts");
	if (jv_get_kind(parts) != JV_KIND_ARRAY || jv_array_length(jv_copy(parts)) == 0) {
		jv_free(parts);
		jv_free(message);
		*error = "params.message must contain either 'parts' (v0.3) or 'content' (v0.2 compat)";
		return jv_invalid();
	}
	return jv_object_set(message, jv_string("parts"), parts_with_kind(parts));
}

/* The envelope as stored; body is consumed. An invalid jv (and *error) on a refusal. */
static jv a2a_normalised(jv body, const char **error)
{
	if (!json_has(body, "jsonrpc")) {
		char id[UUID_LEN + 1];
		uuid_new(id);
		jv env = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));
		env = jv_object_set(env, jv_string("id"), jv_string(id));
		env = jv_object_set(env, jv_string("method"), json_field(body, "method"));
		env = jv_object_set(env, jv_string("params"), json_field(body, "params"));
		jv_free(body);
		body = env;
	}
	jv params = json_field(body, "params");
	jv message = json_field(params, "message");
	if (jv_get_kind(message) != JV_KIND_OBJECT) {
		jv_free(params);
		jv_free(message);
		return body;
	}
	message = message_normalised(message, error);
	if (!jv_is_valid(message)) {
		jv_free(params);
		jv_free(body);
		return message;
	}
	params = jv_object_set(params, jv_string("message"), message);
	return jv_object_set(body, jv_string("params"), params);
}

static char *message_id_of(jv body)
{
	jv params = json_field(body, "params"), message = json_field(params, "message");
	char *id = json_string_dup(message, "messageId");
	jv_free(message);
	jv_free(params);
	return id;
}

/* What a push-mode workspace answers, as set through the control API. */
static void push_answer(const struct workspace *target, jv body, struct reply *rp)
{
	char id[UUID_LEN + 1];
	uuid_new(id);

	switch (target->push_answer) {
	case PUSH_ACCEPTED: {
		jv o = jv_object_set(jv_object(), jv_string("queued"), jv_true());
		reply_json(rp, 202, jv_object_set(o, jv_string("queue_id"), jv_string(id)));
		break;
	}
	case PUSH_QUEUED: {
		jv o = jv_object_set(jv_object(), jv_string("status"), jv_string("queued"));
		reply_json(rp, 200, jv_object_set(o, jv_string("queued"), jv_true()));
		break;
	}
	case PUSH_SYNC: {
		/* The peer's own answer, after it took its time. */
		jv part = jv_object_set(jv_object(), jv_string("kind"), jv_string("text"));
		part = jv_object_set(part, jv_string("text"), jv_string("received"));
		jv result = jv_object_set(jv_object(), jv_string("kind"), jv_string("message"));
		result = jv_object_set(result, jv_string("role"), jv_string("agent"));
		result = jv_object_set(result, jv_string("messageId"), jv_string(id));
		result = jv_object_set(result, jv_string("parts"), jv_array_append(jv_array(), part));
		jv o = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));
		o = jv_object_set(o, jv_string("id"), json_field(body, "id"));
		reply_json(rp, 200, jv_object_set(o, jv_string("result"), result));
		rp->hold_ms = target->push_delay_ms;
		break;
	}
	}
}

/*
 * POST /workspaces/<target>/a2a: the caller is the bearer token's workspace. The
 * message lands in the target's activity once per messageId: a resend of the same id
 * logs nothing new and gets the same answer.
 */
void api_a2a(struct MHD_Connection *c, const char *target_id, jv body, struct reply *rp)
{
	const char *error = NULL;

	struct workspace *caller = token_caller(c, rp);
	if (!caller)
		return;
	if (jv_get_kind(body) != JV_KIND_OBJECT) {
		reply_error(rp, 400, "invalid JSON");
		return;
	}
	struct workspace *target = ws_find(target_id);
	if (!target || target->removed_ns >= 0) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	jv stored = a2a_normalised(jv_copy(body), &error);
	if (!jv_is_valid(stored)) {
		jv_free(stored);
		reply_error(rp, 400, error);
		return;
	}
	const char *m = field_str(stored, "method");
	char *method = xstrdup(m ? m : "message/send");
	char *message_id = message_id_of(stored);
	if (message_id && rows_find_message(target, message_id))
		jv_free(stored);
	else
		row_add(target, caller->id, method, stored, -1);
	free(message_id);

	if (target->delivery_mode && strcmp(target->delivery_mode, "push") == 0) {
		push_answer(target, body, rp);
	} else {
		jv o = jv_object_set(jv_object(), jv_string("status"), jv_string("queued"));
		o = jv_object_set(o, jv_string("delivery_mode"), jv_string("poll"));
		reply_json(rp, 200, jv_object_set(o, jv_string("method"), jv_string(method)));
	}
	free(method);
}

/* Attachments need a uri and a name each; *bad is the index of the first that lacks one. */
static bool attachments_valid(jv attachments, int *bad)
{
	*bad = -1;
	if (jv_get_kind(attachments) == JV_KIND_NULL)
		return true;
	if (jv_get_kind(attachments) != JV_KIND_ARRAY)
		return false;
	jv_array_foreach(attachments, i, a) {
		const char *uri = field_str(a, "uri"), *name = field_str(a, "name");
		if (*bad < 0 && (!uri || !*uri || !name || !*name))
			*bad = i;
		jv_free(a);
	}
	return true;
}

/* POST /workspaces/<id>/notify: a reply to the canvas, echoed as a notify row. */
void api_notify(struct MHD_Connection *c, const char *id, jv body, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	if (!authorised(c, w, rp))
		return;
	const char *message = field_str(body, "message");
	jv attachments = json_field(body, "attachments");
	int bad;
	if (!message || !*message || !attachments_valid(attachments, &bad)) {
		jv_free(attachments);
		reply_error(rp, 400, "message is required");
		return;
	}
	if (bad >= 0) {
		char *why = xasprintf("attachment[%d]: uri and name are required", bad);
		jv_free(attachments);
		reply_error(rp, 400, why);
		free(why);
		return;
	}
	if (!w->talk_to_user) {
		jv_free(attachments);
		reply_error(rp, 403, "talk_to_user_disabled");
		return;
	}
	jv echo = jv_object_set(jv_object(), jv_string("message"), jv_string(message));
	if (jv_get_kind(attachments) == JV_KIND_ARRAY)
		echo = jv_object_set(echo, jv_string("attachments"), attachments);
	else
		jv_free(attachments);
	row_add(w, NULL, "notify", echo, -1);
	reply_status(rp, "sent");
}
