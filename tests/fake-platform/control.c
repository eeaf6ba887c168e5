/* control.c: the control API under /_control that the tests drive the fake platform with. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"


static void ctl_new_workspace(jv body, struct reply *rp)
{
	const char *id = field_str(body, "id"), *token = field_str(body, "token");
	char fresh[UUID_LEN + 1];

	if ((json_has(body, "id") && (!id || !*id)) ||
	    (json_has(body, "token") && (!token || !*token))) {
		reply_error(rp, 400, "id and token must be non-empty strings");
		return;
	}
	if (!id) {
		uuid_new(fresh);
		id = fresh;
	}
	struct workspace *w = ws_find(id);
	if (!w)
		w = ws_create(id, NULL);
	if (token || field_true(body, "no_token") || !w->token) {
		free(w->token);
		w->token = token ? xstrdup(token)
				 : field_true(body, "no_token") ? NULL : new_token();
	}
	jv o = jv_object_set(jv_object(), jv_string("id"), jv_string(w->id));
	o = jv_object_set(o, jv_string("token"), jv_str_or_null(w->token));
	reply_json(rp, 200, o);
}

static void ctl_show_workspace(const char *id, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	jv o = jv_object_set(jv_object(), jv_string("id"), jv_string(w->id));
	o = jv_object_set(o, jv_string("token"), jv_str_or_null(w->token));
	o = jv_object_set(o, jv_string("delivery_mode"), jv_str_or_null(w->delivery_mode));
	o = jv_object_set(o, jv_string("registered"), jv_bool(w->registered));
	o = jv_object_set(o, jv_string("agent_card"), jv_copy(w->agent_card));
	o = jv_object_set(o, jv_string("last_heartbeat_ms"),
			  w->last_heartbeat_ms < 0 ? jv_null()
						   : jv_number((double)w->last_heartbeat_ms));
	o = jv_object_set(o, jv_string("last_heartbeat"), jv_copy(w->last_heartbeat));
	o = jv_object_set(o, jv_string("rows"), jv_number((double)w->nrows));
	reply_json(rp, 200, o);
}

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

/* The JSON-RPC envelope of one queued message, built as the platform stores it. */
static jv message_envelope(jv spec, const char *method, const char *text, bool canvas)
{
	const char *key = field_str(spec, "key");
	const char *context_id = field_str(spec, "context_id"), *task_id = field_str(spec, "task_id");
	char rpc_id[UUID_LEN + 1], message_id[UUID_LEN + 1];
	jv parts;

	if (!key)
		key = "kind";
	if (field_kind(spec, "parts") == JV_KIND_ARRAY) {
		parts = json_field(spec, "parts");
	} else {
		jv part = jv_object_set(jv_object(), jv_string(key), jv_string("text"));
		part = jv_object_set(part, jv_string("text"), jv_string(text));
		parts = jv_array_append(jv_array(), part);
	}
	uuid_new(rpc_id);
	uuid_new(message_id);

	jv message = jv_object_set(jv_object(), jv_string("role"), jv_string("user"));
	message = jv_object_set(message, jv_string("messageId"), jv_string(message_id));
	if (context_id)
		message = jv_object_set(message, jv_string("contextId"), jv_string(context_id));
	if (task_id)
		message = jv_object_set(message, jv_string("taskId"), jv_string(task_id));
	message = jv_object_set(message, jv_string("parts"), parts);

	jv params = jv_object_set(jv_object(), jv_string("message"), message);
	if (canvas)
		params = jv_object_set(params, jv_string("metadata"),
				       jv_object_set(jv_object(), jv_string("history"), jv_array()));

	jv env = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));
	env = jv_object_set(env, jv_string("id"), jv_string(rpc_id));
	env = jv_object_set(env, jv_string("method"), jv_string(method));
	return jv_object_set(env, jv_string("params"), params);
}

static void ctl_messages(jv spec, struct reply *rp)
{
	const char *target = field_str(spec, "workspace_id"), *from = field_str(spec, "from");
	const char *text = field_str(spec, "text"), *method = field_str(spec, "method");
	jv_kind from_kind = field_kind(spec, "from");
	double count = 1, age = -1;

	if (!target) {
		reply_error(rp, 400, "workspace_id is required");
		return;
	}
	if ((json_has(spec, "count") &&
	     !(field_num(spec, "count", &count) && is_integer(count) && count >= 0 &&
	       count <= MESSAGES_MAX)) ||
	    (json_has(spec, "age_secs") &&
	     !(field_num(spec, "age_secs", &age) && age >= 0 && age < 1e9)) ||
	    (from_kind != JV_KIND_INVALID && from_kind != JV_KIND_NULL && !from)) {
		reply_error(rp, 400, "count, age_secs or from is invalid");
		return;
	}
	struct workspace *w = ws_find(target);
	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	if (from && !ws_find(from))
		ws_create(from, new_token());
	if (!text)
		text = "hello";
	if (!method)
		method = "message/send";

	int64_t base_us = age >= 0 ? wall_us() - (int64_t)llround(age * 1e6) : -1;
	jv ids = jv_array();
	for (long i = 1; i <= (long)count; i++) {
		jv request_body;
		if (field_true(spec, "no_body")) {
			request_body = jv_invalid();
		} else if (json_has(spec, "request_body")) {
			request_body = json_field(spec, "request_body");
		} else {
			char *expanded = expand_text(text, i);
			request_body = message_envelope(spec, method, expanded, !from);
			free(expanded);
		}
		struct row *r = row_add(w, from, method, request_body,
					base_us < 0 ? -1 : base_us + i - 1);
		ids = jv_array_append(ids, jv_string(r->id));
	}
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("ids"), ids));
}

static void ctl_posts(struct MHD_Connection *c, struct reply *rp)
{
	const char *kind = query(c, "kind"), *ws = query(c, "workspace_id");
	enum endpoint want = EP_OTHER;

	if (kind && (!endpoint_from_name(kind, &want) || want == EP_ACTIVITY)) {
		reply_error(rp, 400, "kind must be register, heartbeat, a2a or notify");
		return;
	}
	jv out = jv_array();
	for (size_t i = 0; i < platform.nposts; i++) {
		const struct post *p = &platform.posts[i];
		if ((kind && p->kind != want) ||
		    (ws && (!p->workspace_id || strcmp(ws, p->workspace_id) != 0)))
			continue;
		jv o = jv_object_set(jv_object(), jv_string("seq"), jv_number((double)p->seq));
		o = jv_object_set(o, jv_string("kind"), jv_string(endpoint_names[p->kind]));
		o = jv_object_set(o, jv_string("path"), jv_string(p->path));
		o = jv_object_set(o, jv_string("t_ms"), jv_number((double)p->t_ms));
		o = jv_object_set(o, jv_string("status"), jv_number(p->status));
		o = jv_object_set(o, jv_string("headers"), jv_copy(p->headers));
		o = jv_object_set(o, jv_string("body"), jv_copy(p->body));
		out = jv_array_append(out, o);
	}
	reply_json(rp, 200, out);
}

static void ctl_requests(struct reply *rp)
{
	jv out = jv_array();
	for (size_t i = 0; i < platform.nrequests; i++) {
		const struct logged_request *r = &platform.requests[i];
		jv o = jv_object_set(jv_object(), jv_string("seq"), jv_number((double)r->seq));
		o = jv_object_set(o, jv_string("method"), jv_string(r->method));
		o = jv_object_set(o, jv_string("path"), jv_string(r->path));
		o = jv_object_set(o, jv_string("status"), jv_number(r->status));
		o = jv_object_set(o, jv_string("t_ms"), jv_number((double)r->t_ms));
		out = jv_array_append(out, o);
	}
	reply_json(rp, 200, out);
}

static void ctl_activity(struct MHD_Connection *c, struct reply *rp)
{
	const char *id = query(c, "workspace_id");
	struct workspace *w = id ? ws_find(id) : NULL;
	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	reply_rows(rp, w->rows, 0, (long)w->nrows, 1, w->nrows);
}

static void ctl_prune(jv spec, struct reply *rp)
{
	const char *id = field_str(spec, "workspace_id"), *before = field_str(spec, "before_id");
	struct workspace *w = id ? ws_find(id) : NULL;
	size_t pruned = 0;

	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	if (field_true(spec, "all")) {
		pruned = w->nrows;
		rows_remove(w, 0, w->nrows);
	}
	if (before) {
		long at = rows_find(w, before);
		if (at < 0) {
			reply_error(rp, 404, "row not found");
			return;
		}
		pruned += (size_t)at + 1;
		rows_remove(w, 0, (size_t)at + 1);
	}
	jv ids = json_field(spec, "ids");
	if (jv_get_kind(ids) == JV_KIND_ARRAY) {
		jv_array_foreach(ids, i, row_id) {
			long at = jv_get_kind(row_id) == JV_KIND_STRING
				? rows_find(w, jv_string_value(row_id)) : -1;
			if (at >= 0) {
				rows_remove(w, (size_t)at, 1);
				pruned++;
			}
			jv_free(row_id);
		}
	}
	jv_free(ids);
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("pruned"),
					  jv_number((double)pruned)));
}

void control_handle(struct MHD_Connection *c, const char *method, const char *url,
		    struct request *rq, struct reply *rp)
{
	const char *what = url + strlen("/_control");
	bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
	bool del = strcmp(method, "DELETE") == 0;

	if (post && rq->body_too_big) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	jv body = post ? parse_json(rq->body ? rq->body : "{}", rq->body ? rq->body_len : 2)
		       : jv_null();
	if (post && jv_get_kind(body) != JV_KIND_OBJECT) {
		reply_error(rp, 400, "body must be a JSON object");
	} else if (post && strcmp(what, "/workspaces") == 0) {
		ctl_new_workspace(body, rp);
	} else if (get && strncmp(what, "/workspaces/", 12) == 0) {
		ctl_show_workspace(what + 12, rp);
	} else if (post && strcmp(what, "/messages") == 0) {
		ctl_messages(body, rp);
	} else if (get && strcmp(what, "/posts") == 0) {
		ctl_posts(c, rp);
	} else if (del && strcmp(what, "/posts") == 0) {
		posts_clear();
		reply_ok(rp);
	} else if (get && strcmp(what, "/requests") == 0) {
		ctl_requests(rp);
	} else if (del && strcmp(what, "/requests") == 0) {
		requests_clear();
		reply_ok(rp);
	} else if (get && strcmp(what, "/activity") == 0) {
		ctl_activity(c, rp);
	} else if (post && strcmp(what, "/prune") == 0) {
		ctl_prune(body, rp);
	} else if (post && strcmp(what, "/faults") == 0) {
		faults_add(body, rp);
	} else if (del && strcmp(what, "/faults") == 0) {
		faults_clear();
		reply_ok(rp);
	} else if (post && strcmp(what, "/shutdown") == 0) {
		rp->shutdown = true;
		reply_ok(rp);
	} else {
		reply_error(rp, 404, "not found");
	}
	jv_free(body);
}

