/* control-messages.c: POST /_control/messages: queues activity rows of every kind, shaped as the platform stores them. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"

/* text with every "{n}" replaced by n. */
static char *expand_text(const char *text, long n)
{
	struct buf b = { 0 };
	char num[24];
	int numlen = snprintf(num, sizeof num, "%ld", n);

	buf_append(&b, "", 0);
	for (const char *p = text; *p;) {
		const char *hit = strstr(p, "{n}");
		if (!hit) {
			buf_append(&b, p, strlen(p));
			break;
		}
		buf_append(&b, p, (size_t)(hit - p));
		buf_append(&b, num, (size_t)numlen);
		p = hit + 3;
	}
	return b.p;
}

/* Who sent a message: a peer, a person in the canvas, or the platform itself. */
enum origin { FROM_PEER, FROM_CANVAS, FROM_SYSTEM };

/*
 * params.metadata: a canvas turn carries its person, a system turn its source type.
 * A legacy row (from before the platform normalised) has the old canvas history.
 */
static jv params_metadata(jv spec, enum origin origin, bool legacy)
{
	if (legacy)
		return origin == FROM_PEER ? jv_invalid()
			: jv_object_set(jv_object(), jv_string("history"), jv_array());
	if (origin == FROM_SYSTEM)
		return jv_object_set(jv_object(), jv_string("source_type"),
				     jv_string(field_str(spec, "source_type")));
	if (origin == FROM_PEER)
		return jv_invalid();
	const char *user = field_str(spec, "user_id"), *email = field_str(spec, "email");
	jv m = jv_object_set(jv_object(), jv_string("source"), jv_string("canvas_user"));
	m = jv_object_set(m, jv_string("user_identity_status"), jv_string("AUTHENTICATED"));
	m = jv_object_set(m, jv_string("user_id"), jv_string(user ? user : "canvas-user-1"));
	return jv_object_set(m, jv_string("email"), jv_string(email ? email : "person@example.com"));
}

/* The A2A message itself: parts verbatim when given, else one text part under key. */
static jv message_object(jv spec, const char *ws_id, const char *text, enum origin origin,
			 bool legacy)
{
	const char *key = field_str(spec, "key"), *context_id = field_str(spec, "context_id");
	const char *task_id = field_str(spec, "task_id"), *given_id = field_str(spec, "message_id");
	char message_id[UUID_LEN + 1];
	jv parts;

	if (field_kind(spec, "parts") == JV_KIND_ARRAY) {
		parts = json_field(spec, "parts");
	} else {
		jv part = jv_object_set(jv_object(), jv_string(key ? key : "kind"), jv_string("text"));
		part = jv_object_set(part, jv_string("text"), jv_string(text));
		parts = jv_array_append(jv_array(), part);
	}
	if (given_id)
		snprintf(message_id, sizeof message_id, "%s", given_id);
	else
		uuid_new(message_id);
	char *canvas_context = NULL;
	if (!context_id && origin == FROM_CANVAS && !legacy)
		context_id = canvas_context = xasprintf("canvas-%s", ws_id);

	jv message = jv_object_set(jv_object(), jv_string("role"), jv_string("user"));
	message = jv_object_set(message, jv_string("messageId"), jv_string(message_id));
	if (context_id)
		message = jv_object_set(message, jv_string("contextId"), jv_string(context_id));
	/* The platform keeps no taskId on what the canvas sends. */
	if (task_id && (origin == FROM_PEER || legacy))
		message = jv_object_set(message, jv_string("taskId"), jv_string(task_id));
	message = jv_object_set(message, jv_string("parts"), parts);
	if (field_true(spec, "delegation") && origin == FROM_PEER)
		message = jv_object_set(message, jv_string("metadata"),
					jv_object_set(jv_object(), jv_string("delegation_id"),
						      jv_string(message_id)));
	free(canvas_context);
	return message;
}

static jv jsonrpc(const char *method, jv params)
{
	char rpc_id[UUID_LEN + 1];
	uuid_new(rpc_id);
	jv env = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));
	env = jv_object_set(env, jv_string("id"), jv_string(rpc_id));
	env = jv_object_set(env, jv_string("method"), jv_string(method));
	return jv_object_set(env, jv_string("params"), params);
}

/* The request_body of one queued row, built as the platform stores that kind of row. */
static jv request_body(jv spec, const char *ws_id, const char *method, const char *text,
		       enum origin origin)
{
	bool legacy = field_true(spec, "legacy");
	char id[UUID_LEN + 1];

	if (strcmp(method, "notify") == 0)
		return jv_object_set(jv_object(), jv_string("message"), jv_string(text));
	if (strcmp(method, "delegate_result") == 0) {
		uuid_new(id);
		jv o = jv_object_set(jv_object(), jv_string("delegation_id"), jv_string(id));
		o = jv_object_set(o, jv_string("status"), jv_string("completed"));
		return jv_object_set(o, jv_string("response_text"), jv_string(text));
	}
	if (strcmp(method, "tasks/get") == 0 || strcmp(method, "tasks/cancel") == 0) {
		const char *task_id = field_str(spec, "task_id");
		if (!task_id)
			uuid_new(id);
		return jsonrpc(method, jv_object_set(jv_object(), jv_string("id"),
						     jv_string(task_id ? task_id : id)));
	}
	jv params = jv_object_set(jv_object(), jv_string("message"),
				  message_object(spec, ws_id, text, origin, legacy));
	jv metadata = params_metadata(spec, origin, legacy);
	if (jv_is_valid(metadata))
		params = jv_object_set(params, jv_string("metadata"), metadata);
	else
		jv_free(metadata);
	return jsonrpc(method, params);
}

/* When the rows were logged: all at created_at, age_secs ago (a microsecond apart), or now. */
static bool row_times(jv spec, int64_t *base_ns, int64_t *step_ns)
{
	const char *created_at = field_str(spec, "created_at");
	double age = -1;

	*base_ns = -1;
	*step_ns = 0;
	if ((json_has(spec, "created_at") && (!created_at || !parse_rfc3339(created_at, base_ns))) ||
	    (json_has(spec, "age_secs") &&
	     !(field_num(spec, "age_secs", &age) && age >= 0 && age < 1e9)) ||
	    (created_at && age >= 0))
		return false;
	if (age >= 0) {
		*base_ns = wall_ns() - (int64_t)llround(age * 1e9);
		*step_ns = 1000;
	}
	return true;
}

/*
 * Queues count rows for workspace_id; see README.md for the fields. A peer named in
 * "from" that does not exist yet is created (with a token).
 */
void ctl_messages(jv spec, struct reply *rp)
{
	const char *target = field_str(spec, "workspace_id"), *from = field_str(spec, "from");
	const char *text = field_str(spec, "text"), *method = field_str(spec, "method");
	const char *source_type = field_str(spec, "source_type");
	jv_kind from_kind = field_kind(spec, "from");
	double count = 1;
	int64_t base_ns, step_ns;

	if (!target) {
		reply_error(rp, 400, "workspace_id is required");
		return;
	}
	if ((json_has(spec, "count") &&
	     !(field_num(spec, "count", &count) && is_integer(count) && count >= 0 &&
	       count <= MESSAGES_MAX)) ||
	    !row_times(spec, &base_ns, &step_ns) ||
	    (from_kind != JV_KIND_INVALID && from_kind != JV_KIND_NULL && !from) ||
	    (json_has(spec, "source_type") && (!source_type || from)) ||
	    (json_has(spec, "message_id") && !field_str(spec, "message_id"))) {
		reply_error(rp, 400, "count, age_secs, created_at, from, source_type or message_id "
				     "is invalid");
		return;
	}
	struct workspace *w = ws_find(target);
	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	if (from && !ws_find(from))
		ws_create(from, new_token());
	enum origin origin = from ? FROM_PEER : source_type ? FROM_SYSTEM : FROM_CANVAS;

	jv ids = jv_array();
	for (long i = 1; i <= (long)count; i++) {
		jv body;
		if (field_true(spec, "no_body")) {
			body = jv_invalid();
		} else if (json_has(spec, "request_body")) {
			body = json_field(spec, "request_body");
		} else {
			char *expanded = expand_text(text ? text : "hello", i);
			body = request_body(spec, w->id, method ? method : "message/send", expanded,
					    origin);
			free(expanded);
		}
		struct row *r = row_add(w, from, method ? method : "message/send", body,
					base_ns < 0 ? -1 : base_ns + (i - 1) * step_ns);
		ids = jv_array_append(ids, jv_string(r->id));
	}
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("ids"), ids));
}
