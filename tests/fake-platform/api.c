/* api.c: the platform API the bridge speaks to: register, heartbeat, activity, a2a, notify. */
#include <config.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"

/*
 * A request meets, in order: the rate limit, the injected faults, the org guard, the
 * 1 MiB body cap, then its endpoint (auth, validation, effect).
 */

/* The workspace id in /workspaces/<id>/<suffix>, copied into id; false if url has another shape. */
static bool workspace_path(const char *url, const char *suffix, char *id, size_t idsize)
{
	static const char prefix[] = "/workspaces/";
	if (strncmp(url, prefix, sizeof prefix - 1) != 0)
		return false;
	const char *start = url + sizeof prefix - 1, *slash = strchr(start, '/');
	if (!slash || slash == start || strcmp(slash + 1, suffix) != 0 ||
	    (size_t)(slash - start) >= idsize)
		return false;
	memcpy(id, start, (size_t)(slash - start));
	id[slash - start] = '\0';
	return true;
}

static enum endpoint classify(const char *method, const char *url, char *id, size_t idsize)
{
	bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;

	*id = '\0';
	if (post && strcmp(url, "/registry/register") == 0)
		return EP_REGISTER;
	if (post && strcmp(url, "/registry/heartbeat") == 0)
		return EP_HEARTBEAT;
	if (get && workspace_path(url, "activity", id, idsize))
		return EP_ACTIVITY;
	if (post && workspace_path(url, "a2a", id, idsize))
		return EP_A2A;
	if (post && workspace_path(url, "notify", id, idsize))
		return EP_NOTIFY;
	return EP_OTHER;
}

/* Checks the bearer token against w's; answers 401 and returns false when it does not match. */
static bool authorised(struct MHD_Connection *c, const struct workspace *w, struct reply *rp)
{
	const char *auth = header(c, "Authorization");
	if (!auth || strncmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0') {
		reply_error(rp, 401, "missing workspace auth token");
		return false;
	}
	if (!w || !w->token || strcmp(auth + 7, w->token) != 0) {
		reply_error(rp, 401, "invalid workspace auth token");
		return false;
	}
	return true;
}

static void api_register(struct MHD_Connection *c, jv body, struct reply *rp)
{
	const char *id = field_str(body, "id");
	jv_kind mode_kind = field_kind(body, "delivery_mode");

	if (!id || !*id || field_kind(body, "agent_card") != JV_KIND_OBJECT ||
	    (mode_kind != JV_KIND_INVALID && mode_kind != JV_KIND_NULL &&
	     mode_kind != JV_KIND_STRING)) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	struct workspace *w = ws_find(id);
	bool first = !w || !w->token;
	if (!first && !authorised(c, w, rp))
		return;
	if (!w)
		w = ws_create(id, NULL);
	if (first)
		w->token = new_token();
	jv_free(w->agent_card);
	w->agent_card = json_field(body, "agent_card");
	if (mode_kind == JV_KIND_STRING) {
		free(w->delivery_mode);
		w->delivery_mode = xstrdup(field_str(body, "delivery_mode"));
	}
	w->registered = true;

	jv o = jv_object_set(jv_object(), jv_string("status"), jv_string("registered"));
	if (first)
		o = jv_object_set(o, jv_string("auth_token"), jv_string(w->token));
	reply_json(rp, 200, o);
}

static bool heartbeat_valid(jv body)
{
	static const char *const integers[] = { "uptime_seconds", "active_tasks" };
	static const char *const strings[] = { "sample_error", "current_task", "runtime_state" };
	double d;

	for (size_t i = 0; i < sizeof integers / sizeof *integers; i++)
		if (json_has(body, integers[i]) &&
		    !(field_num(body, integers[i], &d) && is_integer(d)))
			return false;
	if (json_has(body, "error_rate") &&
	    !(field_num(body, "error_rate", &d) && d >= 0.0 && d <= 1.0))
		return false;
	for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
		jv_kind k = field_kind(body, strings[i]);
		if (k != JV_KIND_INVALID && k != JV_KIND_STRING)
			return false;
	}
	return true;
}

static void api_heartbeat(struct MHD_Connection *c, jv body, int64_t t_ms, struct reply *rp)
{
	const char *id = field_str(body, "workspace_id");
	if (!id || !*id) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	struct workspace *w = ws_find(id);
	if (!authorised(c, w, rp))
		return;
	if (!heartbeat_valid(body)) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	jv_free(w->last_heartbeat);
	w->last_heartbeat = jv_copy(body);
	w->last_heartbeat_ms = t_ms;
	reply_status(rp, "ok");
}

static void api_activity(struct MHD_Connection *c, const char *id, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	const char *type = query(c, "type"), *since_id = query(c, "since_id");
	const char *since_secs = query(c, "since_secs");
	long limit;

	if (!authorised(c, w, rp))
		return;
	if (parse_long(query(c, "limit"), 1, LONG_MAX, &limit) != 0)
		limit = LIMIT_DEFAULT;
	if (limit > LIMIT_MAX)
		limit = LIMIT_MAX;
	/* Every row this platform stores is an a2a_receive row. */
	bool none = type && strcmp(type, "a2a_receive") != 0;

	if (since_id) {
		long at = rows_find(w, since_id);
		if (at < 0) {
			reply_error(rp, 410, "cursor not found");
			return;
		}
		size_t first = rows_upper_bound(w, w->rows[at]->created_us);
		reply_rows(rp, w->rows, (long)first, none ? (long)first : (long)w->nrows, 1,
			   (size_t)limit);
		return;
	}
	int64_t cutoff = INT64_MIN;
	if (since_secs) {
		long secs;
		if (parse_long(since_secs, 0, LONG_MAX, &secs) != 0) {
			reply_error(rp, 400, "invalid since_secs");
			return;
		}
		if (secs > SINCE_SECS_MAX)
			secs = SINCE_SECS_MAX;
		cutoff = wall_us() - (int64_t)secs * 1000000;
	}
	long end = (long)w->nrows - 1;
	while (end >= 0 && w->rows[end]->created_us >= cutoff)
		end--;
	reply_rows(rp, w->rows, (long)w->nrows - 1, none ? (long)w->nrows - 1 : end, -1,
		   (size_t)limit);
}

static void api_a2a(struct MHD_Connection *c, const char *peer_id, jv body, struct reply *rp)
{
	const char *auth = header(c, "Authorization");
	const char *caller_id = header(c, "X-Workspace-ID");

	if (!auth || strncmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0') {
		reply_error(rp, 401, "missing workspace auth token");
		return;
	}
	if (!caller_id || !*caller_id) {
		reply_error(rp, 400, "missing X-Workspace-ID");
		return;
	}
	if (!authorised(c, ws_find(caller_id), rp))
		return;
	if (jv_get_kind(body) != JV_KIND_OBJECT) {
		reply_error(rp, 400, "invalid JSON");
		return;
	}
	struct workspace *peer = ws_find(peer_id);
	if (!peer) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	const char *method = field_str(body, "method");
	row_add(peer, caller_id, method ? method : "message/send", jv_copy(body), -1);

	jv o = jv_object_set(jv_object(), jv_string("status"), jv_string("queued"));
	o = jv_object_set(o, jv_string("delivery_mode"), jv_string("poll"));
	o = jv_object_set(o, jv_string("method"), jv_string("message/send"));
	reply_json(rp, 200, o);
}

static void api_notify(struct MHD_Connection *c, const char *id, jv body, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	if (!authorised(c, w, rp))
		return;
	const char *message = field_str(body, "message");
	if (!message || !*message) {
		reply_error(rp, 400, "message is required");
		return;
	}
	jv echo = jv_object_set(jv_object(), jv_string("message"), jv_string(message));
	row_add(w, NULL, "notify", echo, -1);
	reply_status(rp, "sent");
}

static void api_dispatch(struct MHD_Connection *c, const struct request *rq, enum endpoint ep,
			 const char *id, jv body, struct reply *rp)
{
	if (platform.org_id && ep != EP_REGISTER && ep != EP_HEARTBEAT) {
		const char *org = header(c, "X-Molecule-Org-Id");
		if (!org || strcmp(org, platform.org_id) != 0) {
			rp->status = 404;
			rp->bare = true;
			return;
		}
	}
	if (ep != EP_ACTIVITY && ep != EP_OTHER && rq->body_too_big) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	switch (ep) {
	case EP_REGISTER:
		api_register(c, body, rp);
		break;
	case EP_HEARTBEAT:
		api_heartbeat(c, body, rq->t_ms, rp);
		break;
	case EP_ACTIVITY:
		api_activity(c, id, rp);
		break;
	case EP_A2A:
		api_a2a(c, id, body, rp);
		break;
	case EP_NOTIFY:
		api_notify(c, id, body, rp);
		break;
	case EP_OTHER:
		reply_error(rp, 404, "not found");
		break;
	}
}

/* The workspace a recorded post is about: the caller for a2a. */
static const char *post_workspace(struct MHD_Connection *c, enum endpoint ep, const char *id,
				  jv body)
{
	switch (ep) {
	case EP_REGISTER:
		return field_str(body, "id");
	case EP_HEARTBEAT:
		return field_str(body, "workspace_id");
	case EP_A2A:
		return header(c, "X-Workspace-ID");
	case EP_NOTIFY:
		return id;
	default:
		return NULL;
	}
}

static void record_post(struct MHD_Connection *c, const struct request *rq, enum endpoint ep,
			const char *id, jv body, unsigned status)
{
	const char *ws = post_workspace(c, ep, id, body);

	posts_add((struct post){
		.seq = rq->seq, .kind = ep, .path = xstrdup(rq->uri), .t_ms = rq->t_ms,
		.status = status, .workspace_id = ws ? xstrdup(ws) : NULL,
		.headers = request_headers(c),
		.body = jv_is_valid(body) ? jv_copy(body)
					  : jv_string_sized(rq->body ? rq->body : "",
							    (int)rq->body_len),
	});
}

void api_handle(struct MHD_Connection *c, const char *method, const char *url,
		struct request *rq, struct reply *rp, struct rate_headers *rh)
{
	char id[256];
	enum endpoint ep = classify(method, url, id, sizeof id);
	bool allowed, decided;
	long retry_after = 0;
	unsigned delay_ms = 0;

	pthread_mutex_lock(&state_lock);
	*rh = rate_limit_take(rq->conn->ip, &allowed, &retry_after);
	if (!allowed) {
		reply_too_many(rp, retry_after);
		decided = true;
	} else {
		decided = faults_apply(ep, rp, &delay_ms);
	}
	pthread_mutex_unlock(&state_lock);

	if (delay_ms)
		sleep_ms(delay_ms);

	pthread_mutex_lock(&state_lock);
	jv body = ep == EP_ACTIVITY || ep == EP_OTHER || !rq->body
		? jv_invalid() : parse_json(rq->body, rq->body_len);
	if (!decided)
		api_dispatch(c, rq, ep, id, body, rp);
	unsigned status = rp->reset ? 0 : rp->status;
	if (ep != EP_ACTIVITY && ep != EP_OTHER)
		record_post(c, rq, ep, id, body, status);
	requests_set_status(rq->seq, status);
	if (platform.log)
		fprintf(platform.log, "%lld %s %s %u\n", (long long)rq->t_ms, method, rq->uri, status);
	jv_free(body);
	pthread_mutex_unlock(&state_lock);
}

