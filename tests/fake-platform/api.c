/* api.c: the platform API's front door (routing, rate limit, tenancy, auth) and register, heartbeat, workspace status. */
#include <config.h>

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "fake.h"

/*
 * A request meets, in order: the rate limit, the injected faults, the tenant guard,
 * the body cap, then its endpoint (auth, validation, effect).
 */

struct route {
	enum endpoint ep;
	char id[256];                   /* the workspace the path names, or "" */
	char file_id[256];              /* the pending upload the path names, or "" */
};

/* Copies the path segment at *p (up to '/' or the end) into out and moves past it. */
static bool segment(const char **p, char *out, size_t size)
{
	size_t n = strcspn(*p, "/");
	if (n == 0 || n >= size)
		return false;
	memcpy(out, *p, n);
	out[n] = '\0';
	*p += n;
	return true;
}

/* The endpoint of /workspaces/<id><rest>, with rest the part after the id. */
static enum endpoint workspace_endpoint(bool get, bool post, const char *rest, struct route *rt)
{
	if (get && *rest == '\0')
		return EP_WORKSPACE;
	if (get && strcmp(rest, "/activity") == 0)
		return EP_ACTIVITY;
	if (post && strcmp(rest, "/activity/ack") == 0 && platform.acks_enabled)
		return EP_ACK;
	if (post && strcmp(rest, "/a2a") == 0)
		return EP_A2A;
	if (post && strcmp(rest, "/notify") == 0)
		return EP_NOTIFY;
	if (get && strcmp(rest, "/events/stream") == 0 && platform.events_enabled)
		return EP_EVENTS;
	if (strncmp(rest, "/pending-uploads/", 17) == 0) {
		rest += 17;
		if (segment(&rest, rt->file_id, sizeof rt->file_id)) {
			if (get && strcmp(rest, "/content") == 0)
				return EP_UPLOAD;
			if (post && strcmp(rest, "/ack") == 0)
				return EP_UPLOAD_ACK;
		}
	}
	return EP_OTHER;
}

static void classify(const char *method, const char *url, struct route *rt)
{
	bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;

	*rt = (struct route){ .ep = EP_OTHER };
	if (post && strcmp(url, "/registry/register") == 0) {
		rt->ep = EP_REGISTER;
	} else if (post && strcmp(url, "/registry/heartbeat") == 0) {
		rt->ep = EP_HEARTBEAT;
	} else if (get && strcmp(url, "/health") == 0) {
		rt->ep = EP_HEALTH;
	} else if (strncmp(url, "/workspaces/", 12) == 0) {
		const char *rest = url + 12;
		if (segment(&rest, rt->id, sizeof rt->id))
			rt->ep = workspace_endpoint(get, post, rest, rt);
		if (rt->ep == EP_OTHER)
			rt->id[0] = rt->file_id[0] = '\0';
	}
}

/* The token after "Bearer " (case-sensitive), or NULL. */
static const char *bearer(struct MHD_Connection *c)
{
	const char *auth = header(c, "Authorization");
	if (!auth || strncmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0')
		return NULL;
	return auth + 7;
}

/* X-Workspace-ID is optional; when sent it must name the token's own workspace. */
static bool caller_claim_ok(struct MHD_Connection *c, const struct workspace *w,
			    struct reply *rp)
{
	const char *claimed = header(c, "X-Workspace-ID");
	if (claimed && *claimed && strcmp(claimed, w->id) != 0) {
		reply_error(rp, 401, "caller ID does not match workspace auth token");
		return false;
	}
	return true;
}

bool authorised(struct MHD_Connection *c, const struct workspace *w, struct reply *rp)
{
	const char *token = bearer(c);
	if (!token) {
		reply_error(rp, 401, "missing workspace auth token");
		return false;
	}
	if (!w || !w->token || strcmp(token, w->token) != 0) {
		reply_error(rp, 401, "invalid workspace auth token");
		return false;
	}
	return caller_claim_ok(c, w, rp);
}

/* The caller of /a2a is whoever the bearer token belongs to. */
struct workspace *token_caller(struct MHD_Connection *c, struct reply *rp)
{
	const char *token = bearer(c);
	struct workspace *w = token ? ws_by_token(token) : NULL;
	if (!token)
		reply_error(rp, 401, "missing workspace auth token");
	else if (!w)
		reply_error(rp, 401, "invalid workspace auth token");
	else if (!caller_claim_ok(c, w, rp))
		w = NULL;
	return w;
}

static void api_register(struct MHD_Connection *c, jv body, struct reply *rp)
{
	const char *id = field_str(body, "id"), *mode = field_str(body, "delivery_mode");
	jv_kind mode_kind = field_kind(body, "delivery_mode");

	if (!id || !*id || field_kind(body, "agent_card") != JV_KIND_OBJECT ||
	    (mode_kind != JV_KIND_INVALID && mode_kind != JV_KIND_NULL &&
	     mode_kind != JV_KIND_STRING)) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	struct workspace *w = ws_find(id);
	/* Without a live token (new, or revoked) a register needs none, and mints one. */
	bool mint = !w || (!w->token && w->removed_ns < 0);
	if (!mint && !authorised(c, w, rp))
		return;
	if (mode && strcmp(mode, "poll") != 0 && strcmp(mode, "push") != 0) {
		reply_error(rp, 400, "delivery_mode must be 'push' or 'poll'");
		return;
	}
	/* A workspace is push-mode unless told otherwise, and push needs a url. */
	const char *url = field_str(body, "url");
	if (!mode)
		mode = "push";
	if (strcmp(mode, "push") == 0 && (!url || !*url)) {
		reply_error(rp, 400, "url is required for push-mode workspaces");
		return;
	}
	if (!w)
		w = ws_create(id, NULL);
	if (mint)
		w->token = new_token();
	jv_free(w->agent_card);
	w->agent_card = json_field(body, "agent_card");
	free(w->delivery_mode);
	w->delivery_mode = xstrdup(mode);
	w->registered = true;
	ws_heard_from(w);

	jv o = jv_object_set(jv_object(), jv_string("status"), jv_string("registered"));
	o = jv_object_set(o, jv_string("delivery_mode"), jv_string(mode));
	if (mint)
		o = jv_object_set(o, jv_string("auth_token"), jv_string(w->token));
	reply_json(rp, 200, o);
}

/* A register that failed degrades its workspace, unless the caller was not even let in. */
static void register_outcome(jv body, unsigned status)
{
	const char *id = field_str(body, "id");
	struct workspace *w = id ? ws_find(id) : NULL;
	if (w && status != 200 && status != 0 && status != 401 && status != 429)
		ws_register_failed(w);
}

static bool heartbeat_valid(jv body)
{
	static const char *const integers[] = { "uptime_seconds", "active_tasks" };
	static const char *const strings[] = { "sample_error", "current_task", "runtime_state" };
	jv_kind busy = field_kind(body, "is_busy");
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
	return busy == JV_KIND_INVALID || busy == JV_KIND_TRUE || busy == JV_KIND_FALSE;
}

static void api_heartbeat(struct MHD_Connection *c, jv body, int64_t t_ms, struct reply *rp)
{
	const char *id = field_str(body, "workspace_id");
	double error_rate;

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
	ws_heard_from(w);
	/* A high error rate degrades, a low one recovers; in between nothing changes. */
	if (field_num(body, "error_rate", &error_rate)) {
		if (error_rate >= 0.5)
			w->error_degraded = true;
		else if (error_rate < 0.1)
			w->error_degraded = false;
	}
	jv o = jv_object_set(jv_object(), jv_string("status"), jv_string("ok"));
	reply_json(rp, 200, jv_object_set(o, jv_string("generation"), jv_number(0)));
}

/* GET /workspaces/<id>: open to anyone who knows the id, as the canvas reads it. */
static void api_workspace(const char *id, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	char at[40];

	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	if (w->removed_ns >= 0) {
		format_rfc3339(w->removed_ns, at);
		jv o = jv_object_set(jv_object(), jv_string("error"), jv_string("workspace removed"));
		o = jv_object_set(o, jv_string("id"), jv_string(w->id));
		reply_json(rp, 410, jv_object_set(o, jv_string("removed_at"), jv_string(at)));
		return;
	}
	jv busy = json_field(w->last_heartbeat, "is_busy");
	jv o = jv_object_set(jv_object(), jv_string("id"), jv_string(w->id));
	o = jv_object_set(o, jv_string("name"), jv_str_or_null(w->name));
	o = jv_object_set(o, jv_string("role"), jv_str_or_null(w->role));
	o = jv_object_set(o, jv_string("status"), jv_string(ws_status(w)));
	o = jv_object_set(o, jv_string("delivery_mode"), jv_str_or_null(w->delivery_mode));
	o = jv_object_set(o, jv_string("is_busy"), jv_bool(jv_get_kind(busy) == JV_KIND_TRUE));
	o = jv_object_set(o, jv_string("current_task"),
			  jv_str_or_null(field_str(w->last_heartbeat, "current_task")));
	jv_free(busy);
	reply_json(rp, 200, o);
}

static void api_events(struct MHD_Connection *c, const char *id, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	if (!authorised(c, w, rp))
		return;
	const union MHD_ConnectionInfo *fd =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	free(rp->body);
	rp->body = NULL;
	rp->status = 200;
	rp->content_type = xstrdup("text/event-stream");
	rp->events = events_subscribe(w, &rp->stream, fd ? fd->connect_fd : -1);
}

/* The multi-tenant guard: the org header on every path but register, heartbeat, health. */
static bool tenant_ok(struct MHD_Connection *c, enum endpoint ep, struct reply *rp)
{
	if (!platform.org_id || ep == EP_REGISTER || ep == EP_HEARTBEAT || ep == EP_HEALTH)
		return true;
	const char *org = header(c, "X-Molecule-Org-Id");
	if ((!org || !*org) && !platform.missing_org_404) {
		jv o = jv_object_set(jv_object(), jv_string("error"),
				     jv_string("missing tenant routing header"));
		o = jv_object_set(o, jv_string("code"), jv_string("TENANT_ORG_HEADER_REQUIRED"));
		o = jv_object_set(o, jv_string("required_header"), jv_string("X-Molecule-Org-Id"));
		reply_json(rp, 400, o);
		return false;
	}
	if (!org || strcmp(org, platform.org_id) != 0) {
		free(rp->body);
		rp->body = NULL;
		rp->status = 404;
		rp->bare = true;
		return false;
	}
	return true;
}

static void body_too_big(enum endpoint ep, struct reply *rp)
{
	if (ep != EP_A2A) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	jv o = jv_object_set(jv_object(), jv_string("error"),
			     jv_string("request body exceeds the 16 MiB limit"));
	o = jv_object_set(o, jv_string("truncated"), jv_true());
	reply_json(rp, 413, jv_object_set(o, jv_string("max_bytes"), jv_number(A2A_BODY_CAP)));
}

static void api_dispatch(struct MHD_Connection *c, const struct request *rq,
			 const struct route *rt, jv body, struct reply *rp)
{
	if (!tenant_ok(c, rt->ep, rp))
		return;
	if (endpoint_is_post(rt->ep) && rq->body_too_big) {
		body_too_big(rt->ep, rp);
		return;
	}
	switch (rt->ep) {
	case EP_REGISTER: api_register(c, body, rp); break;
	case EP_HEARTBEAT: api_heartbeat(c, body, rq->t_ms, rp); break;
	case EP_ACTIVITY: api_activity(c, rt->id, rp); break;
	case EP_ACK: api_ack(c, rt->id, body, rp); break;
	case EP_A2A: api_a2a(c, rt->id, body, rp); break;
	case EP_NOTIFY: api_notify(c, rt->id, body, rp); break;
	case EP_WORKSPACE: api_workspace(rt->id, rp); break;
	case EP_EVENTS: api_events(c, rt->id, rp); break;
	case EP_UPLOAD: api_upload_content(c, rt->id, rt->file_id, rp); break;
	case EP_UPLOAD_ACK: api_upload_ack(c, rt->id, rt->file_id, rp); break;
	case EP_HEALTH: reply_status(rp, "ok"); break;
	case EP_OTHER: reply_error(rp, 404, "not found"); break;
	}
}

/* The workspace a recorded post is about: the caller for a2a. */
static const char *post_workspace(struct MHD_Connection *c, const struct route *rt, jv body)
{
	switch (rt->ep) {
	case EP_REGISTER:
		return field_str(body, "id");
	case EP_HEARTBEAT:
		return field_str(body, "workspace_id");
	case EP_A2A: {
		const char *token = bearer(c);
		const struct workspace *caller = token ? ws_by_token(token) : NULL;
		return caller ? caller->id : header(c, "X-Workspace-ID");
	}
	default:
		return rt->id;
	}
}

static void record_post(struct MHD_Connection *c, const struct request *rq,
			const struct route *rt, jv body, unsigned status)
{
	const char *ws = post_workspace(c, rt, body);

	posts_add((struct post){
		.seq = rq->seq, .kind = rt->ep, .path = xstrdup(rq->uri), .t_ms = rq->t_ms,
		.status = status, .workspace_id = ws ? xstrdup(ws) : NULL,
		.headers = request_headers(c),
		.body = jv_is_valid(body) ? jv_copy(body)
					  : jv_string_sized(rq->body ? rq->body : "",
							    (int)rq->body_len),
	});
}

/* Whose budget a request spends: the org's, else the token's, else the address's. */
static char *rate_key(struct MHD_Connection *c, const struct request *rq)
{
	const char *org = header(c, "X-Molecule-Org-Id");
	while (org && (*org == ' ' || *org == '\t'))
		org++;
	if (org && *org)
		return xasprintf("org:%s", org);
	const char *token = bearer(c);
	if (token)
		return xasprintf("tok:%s", token);
	return xasprintf("ip:%s", rq->conn ? rq->conn->ip : "?");
}

void api_handle(struct MHD_Connection *c, const char *method, const char *url,
		struct request *rq, struct reply *rp, struct rate_headers *rh)
{
	struct route rt;
	bool decided;
	long retry_after = 0;
	unsigned delay_ms = 0;
	char *key = rate_key(c, rq);

	classify(method, url, &rt);
	pthread_mutex_lock(&state_lock);
	if (!rate_limit_take(key, rh, &retry_after)) {
		reply_too_many(rp, retry_after);
		decided = true;
	} else {
		decided = faults_apply(rt.ep, rt.id, rp, &delay_ms);
	}
	pthread_mutex_unlock(&state_lock);
	free(key);

	if (delay_ms)
		sleep_ms(delay_ms);

	pthread_mutex_lock(&state_lock);
	bool posted = endpoint_is_post(rt.ep);
	jv body = posted && rq->body ? parse_json(rq->body, rq->body_len) : jv_invalid();
	if (!decided)
		api_dispatch(c, rq, &rt, body, rp);
	unsigned status = rp->reset ? 0 : rp->status;
	if (rt.ep == EP_REGISTER)
		register_outcome(body, status);
	if (posted)
		record_post(c, rq, &rt, body, status);
	requests_set_status(rq->seq, status);
	if (platform.log)
		fprintf(platform.log, "%lld %s %s %u\n", (long long)rq->t_ms, method, rq->uri, status);
	jv_free(body);
	pthread_mutex_unlock(&state_lock);
}
