/* session.c: registration, the adopted token, heartbeats, and the error rate over a rolling minute. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "http.h"
#include "inbox.h"
#include "json.h"
#include "log.h"
#include "platform.h"
#include "util.h"

/* ---- the error rate --------------------------------------------------- */

static struct session_bucket *bucket_at(struct session_errors *e, int64_t now)
{
	int64_t sec = now / 1000;
	struct session_bucket *k = &e->buckets[sec % SESSION_ERROR_SECONDS];
	if (k->sec != sec)
		*k = (struct session_bucket){ .sec = sec };
	return k;
}

void session_errors_note(struct session_errors *e, int64_t now, bool err, const char *why)
{
	struct session_bucket *k = bucket_at(e, now);
	if (err) {
		k->errors++;
		if (why) {
			free(e->sample);
			e->sample = xstrndup(why, 200);
		}
	} else {
		k->ok++;
	}
}

double session_errors_rate(struct session_errors *e, int64_t now)
{
	long errs = 0, all = 0;
	for (int i = 0; i < SESSION_ERROR_SECONDS; i++) {
		const struct session_bucket *k = &e->buckets[i];
		if (now / 1000 - k->sec < SESSION_ERROR_SECONDS) {
			errs += k->errors;
			all += k->errors + k->ok;
		}
	}
	if (errs == 0) {
		free(e->sample);
		e->sample = NULL;
	}
	return all ? (double)errs / (double)all : 0;
}

void session_errors_free(struct session_errors *e)
{
	free(e->sample);
	e->sample = NULL;
}

void session_outcome(struct bridge *b, bool err, const char *why)
{
	session_errors_note(&b->session.errors, now_ms(), err, why);
}

void session_free(struct bridge *b)
{
	session_errors_free(&b->session.errors);
}

/* ---- the token -------------------------------------------------------- */

void session_token_from_state(struct bridge *b)
{
	struct settings *s = b->s;
	if (s->token)
		return;
	s->token = json_string_dup(b->st, "auth_token");
	if (s->token) {
		free(s->token_source);
		s->token_source = xstrdup("state");
		log_add_secret(s->token);
	}
}

/* ---- registration ----------------------------------------------------- */

static void heartbeat_start(struct bridge *b);

static void on_register(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	bool ok = r->status >= 200 && r->status < 300;
	char *tok = ok ? platform_adopted_token(r->body, r->len) : NULL;
	if (tok) {
		/* First registration: the platform hands out the workspace's token
		 * once. Keep it (0600 state file) or the workspace is lost, even when
		 * the bridge is already stopping. */
		log_add_secret(tok);
		http_set_token(b->h, tok);
		free(b->s->token);
		b->s->token = tok;
		b->st = jv_object_set(b->st, jv_string("auth_token"), jv_string(tok));
		log_info("adopted the workspace token handed out at first registration (kept in the state file)");
		save_now(b);
	}
	if (b->phase != PH_REGISTER)
		return; /* stopped meanwhile */
	if (ok) {
		log_info("registered workspace %s at %s", b->s->workspace_id, b->s->api_url);
		b->phase = PH_RUN;
		fetch_wake(b, now_ms());
		heartbeat_start(b);
		return;
	}
	char *why = platform_describe(r);
	const char *hint =
		r->status == 401 || r->status == 403 ? "check MOLECULE_WORKSPACE_TOKEN or --token-file, and that the token belongs to this workspace"
		: r->status == 404 ? "check --api-url and, on a multi-tenant platform, --org-id"
		: r->status == 400 ? "check --agent-card"
		: "check the platform";
	log_error("registration of workspace %s refused (%s): %s", b->s->workspace_id, why, hint);
	free(why);
	bridge_stop(b, MC_EXIT_ERROR, "registration refused");
}

void session_register(struct bridge *b)
{
	char *body = platform_register_body(b->s->workspace_id, b->s->agent_card);
	struct http_opts o = {
		.method = "POST", .path = "/registry/register", .body = body, .body_len = strlen(body),
		.max_attempts = 0, .done = on_register, .ctx = b,
	};
	http_start(b->h, &o);
	free(body);
}

/* ---- heartbeats ------------------------------------------------------- */

static void on_heartbeat(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	b->session.heartbeat_busy = false;
	if (r->status < 200 || r->status >= 300) {
		char *why = platform_describe(r);
		log_warn("heartbeat failed (%s)", why);
		free(why);
	}
}

static void heartbeat_start(struct bridge *b)
{
	struct session *se = &b->session;
	int64_t now = now_ms();
	se->next_heartbeat = now + (int64_t)(b->s->heartbeat * 1000);
	if (se->heartbeat_busy)
		return;
	struct message *oldest = inbox_oldest_active(b->ib);
	struct heartbeat_info hb = {
		.uptime_seconds = (now - b->started) / 1000,
		.active_tasks = inbox_open_count(b->ib),
		.error_rate = session_errors_rate(&se->errors, now),
		.sample_error = se->errors.sample,
		.current_task = oldest && oldest->summary ? oldest->summary : "",
	};
	char *body = platform_heartbeat_body(b->s->workspace_id, &hb);
	struct http_opts o = {
		.method = "POST", .path = "/registry/heartbeat", .body = body, .body_len = strlen(body),
		.max_attempts = 1, .done = on_heartbeat, .ctx = b,
	};
	se->heartbeat_busy = true;
	http_start(b->h, &o);
	free(body);
}

void session_tick(struct bridge *b, int64_t now)
{
	if (now >= b->session.next_heartbeat)
		heartbeat_start(b);
}

int64_t session_next_wakeup(const struct bridge *b, int64_t now)
{
	return b->session.next_heartbeat - now;
}
