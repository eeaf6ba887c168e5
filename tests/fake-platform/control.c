/* control.c: the control API under /_control that the tests drive the fake platform with. */
#include <config.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"

/* Reads the optional settings of POST /_control/workspaces into w; false when one is bad. */
static bool workspace_settings(jv body, struct workspace *w)
{
	const char *name = field_str(body, "name"), *role = field_str(body, "role");
	const char *mode = field_str(body, "delivery_mode"), *answer = field_str(body, "push_answer");
	jv_kind talk = field_kind(body, "talk_to_user");
	double delay = 0;

	if ((json_has(body, "name") && !name) || (json_has(body, "role") && !role) ||
	    (json_has(body, "delivery_mode") &&
	     (!mode || (strcmp(mode, "poll") != 0 && strcmp(mode, "push") != 0))) ||
	    (json_has(body, "push_answer") &&
	     (!answer || (strcmp(answer, "sync") != 0 && strcmp(answer, "accepted") != 0 &&
			  strcmp(answer, "queued") != 0))) ||
	    (json_has(body, "push_delay_ms") &&
	     !(field_num(body, "push_delay_ms", &delay) && is_integer(delay) && delay >= 0 &&
	       delay <= 36e5)) ||
	    (talk != JV_KIND_INVALID && talk != JV_KIND_TRUE && talk != JV_KIND_FALSE))
		return false;
	if (name) {
		free(w->name);
		w->name = xstrdup(name);
	}
	if (role) {
		free(w->role);
		w->role = xstrdup(role);
	}
	if (mode) {
		free(w->delivery_mode);
		w->delivery_mode = xstrdup(mode);
	}
	if (answer)
		w->push_answer = strcmp(answer, "accepted") == 0 ? PUSH_ACCEPTED
			       : strcmp(answer, "queued") == 0 ? PUSH_QUEUED : PUSH_SYNC;
	if (json_has(body, "push_delay_ms"))
		w->push_delay_ms = (unsigned)delay;
	if (talk != JV_KIND_INVALID)
		w->talk_to_user = talk == JV_KIND_TRUE;
	return true;
}

/* POST /_control/workspaces: creates a workspace, or changes one that exists. */
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
	bool created = !w;
	if (created)
		w = ws_create(id, NULL);
	if (!workspace_settings(body, w)) {
		reply_error(rp, 400, "invalid workspace settings");
		return;
	}
	if (token || field_true(body, "no_token") || (created && !w->token)) {
		free(w->token);
		w->token = token ? xstrdup(token)
				 : field_true(body, "no_token") ? NULL : new_token();
	}
	jv o = jv_object_set(jv_object(), jv_string("id"), jv_string(w->id));
	o = jv_object_set(o, jv_string("token"), jv_str_or_null(w->token));
	reply_json(rp, 200, o);
}

static jv number_or_null(int64_t n)
{
	return n < 0 ? jv_null() : jv_number((double)n);
}

static void ctl_show_workspace(const char *id, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	char at[40];

	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	if (w->removed_ns >= 0)
		format_rfc3339(w->removed_ns, at);
	jv o = jv_object_set(jv_object(), jv_string("id"), jv_string(w->id));
	o = jv_object_set(o, jv_string("token"), jv_str_or_null(w->token));
	o = jv_object_set(o, jv_string("name"), jv_str_or_null(w->name));
	o = jv_object_set(o, jv_string("role"), jv_str_or_null(w->role));
	o = jv_object_set(o, jv_string("delivery_mode"), jv_str_or_null(w->delivery_mode));
	o = jv_object_set(o, jv_string("registered"), jv_bool(w->registered));
	o = jv_object_set(o, jv_string("status"), jv_string(ws_status(w)));
	o = jv_object_set(o, jv_string("removed_at"), w->removed_ns >= 0 ? jv_string(at) : jv_null());
	o = jv_object_set(o, jv_string("talk_to_user"), jv_bool(w->talk_to_user));
	o = jv_object_set(o, jv_string("agent_card"), jv_copy(w->agent_card));
	o = jv_object_set(o, jv_string("last_heartbeat_ms"), number_or_null(w->last_heartbeat_ms));
	o = jv_object_set(o, jv_string("last_heartbeat"), jv_copy(w->last_heartbeat));
	o = jv_object_set(o, jv_string("last_acked_seq"), number_or_null(w->last_acked_seq));
	o = jv_object_set(o, jv_string("event_streams"), jv_number((double)events_streams(w->id)));
	o = jv_object_set(o, jv_string("rows"), jv_number((double)w->nrows));
	reply_json(rp, 200, o);
}

/* POST /_control/workspaces/<id>/<action>: what the platform's owner or admin does to it. */
static void ctl_workspace_action(const char *path, jv body, struct reply *rp)
{
	char id[256];
	const char *slash = strchr(path, '/');
	jv_kind paused = field_kind(body, "paused");

	if (!slash || (size_t)(slash - path) >= sizeof id) {
		reply_error(rp, 404, "not found");
		return;
	}
	memcpy(id, path, (size_t)(slash - path));
	id[slash - path] = '\0';
	struct workspace *w = ws_find(id);
	const char *action = slash + 1;
	if (!w) {
		reply_error(rp, 404, "workspace not found");
	} else if (strcmp(action, "revoke") == 0) {
		ws_revoke(w);
		reply_ok(rp);
	} else if (strcmp(action, "remove") == 0) {
		ws_remove(w);
		reply_ok(rp);
	} else if (strcmp(action, "pause") == 0) {
		if (paused != JV_KIND_INVALID && paused != JV_KIND_TRUE && paused != JV_KIND_FALSE) {
			reply_error(rp, 400, "paused must be true or false");
			return;
		}
		w->paused = paused != JV_KIND_FALSE;
		reply_ok(rp);
	} else {
		reply_error(rp, 404, "not found");
	}
}

static void ctl_posts(struct MHD_Connection *c, struct reply *rp)
{
	const char *kind = query(c, "kind"), *ws = query(c, "workspace_id");
	enum endpoint want = EP_OTHER;

	if (kind && (!endpoint_from_name(kind, &want) || !endpoint_is_post(want))) {
		reply_error(rp, 400, "kind must be register, heartbeat, a2a, notify, ack or upload_ack");
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
	reply_rows(rp, w->rows, 0, (long)w->nrows, 1);
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
	} else if (post && strncmp(what, "/workspaces/", 12) == 0) {
		ctl_workspace_action(what + 12, body, rp);
	} else if (post && strcmp(what, "/messages") == 0) {
		ctl_messages(body, rp);
	} else if (post && strcmp(what, "/uploads") == 0) {
		ctl_upload_create(body, rp);
	} else if (get && strcmp(what, "/uploads") == 0) {
		ctl_uploads_list(c, rp);
	} else if (post && strncmp(what, "/uploads/", 9) == 0 &&
		   strlen(what) == 9 + UUID_LEN + 7 && strcmp(what + 9 + UUID_LEN, "/expire") == 0) {
		char file_id[UUID_LEN + 1];
		memcpy(file_id, what + 9, UUID_LEN);
		file_id[UUID_LEN] = '\0';
		ctl_upload_expire(file_id, rp);
	} else if (get && strcmp(what, "/events") == 0) {
		const char *id = query(c, "workspace_id");
		if (id && ws_find(id))
			reply_json(rp, 200, events_report(id));
		else
			reply_error(rp, 404, "workspace not found");
	} else if (post && strcmp(what, "/sweep") == 0) {
		reply_json(rp, 200, jv_object_set(jv_object(), jv_string("marked"),
						  jv_number((double)sweep_once())));
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

