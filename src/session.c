/* session.c: registration, the token (kept, minted, refused), heartbeats, and the error rate over a rolling minute. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "bridge.h"
#include "http.h"
#include "inbox.h"
#include "json.h"
#include "log.h"
#include "outbox.h"
#include "platform.h"
#include "sha1.h"
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
	free(b->session.refusal);
	b->session.refusal = NULL;
}

/* ---- the token -------------------------------------------------------- */

#define STATE_TOKEN "auth_token"
#define STATE_REPLACED "auth_token_replaced"  /* SHA-1 of the token it replaced, never the token */

enum session_token_pick session_token_pick(const char *configured, const char *kept, const char *replaced)
{
	if (!kept || !*kept)
		return TOKEN_CONFIGURED;
	if (!configured)
		return TOKEN_KEPT;
	if (strcmp(configured, kept) == 0 || !replaced)
		return TOKEN_CONFIGURED;
	char hash[SHA1_HEX_LEN + 1];
	sha1_hex(configured, strlen(configured), hash);
	return strcmp(hash, replaced) == 0 ? TOKEN_KEPT_REPLACED : TOKEN_CONFIGURED;
}

static void use_token(struct settings *s, char *token)
{
	if (s->token) {
		memset(s->token, 0, strlen(s->token));
		free(s->token);
	}
	s->token = token;
	free(s->token_source);
	s->token_source = xstrdup("state");
	log_add_secret(token);
}

void session_token_from_state(struct bridge *b)
{
	struct settings *s = b->s;
	char *kept = json_string_dup(b->st, STATE_TOKEN);
	char *replaced = json_string_dup(b->st, STATE_REPLACED);
	switch (session_token_pick(s->token, kept, replaced)) {
	case TOKEN_KEPT_REPLACED:
		log_info("the configured token (%s) was replaced by one the platform minted at registration: "
			 "using that one, kept in the state file",
			 !s->token_source ? "?" : strcmp(s->token_source, "environment") == 0 ? "MOLECULE_WORKSPACE_TOKEN"
			 : strcmp(s->token_source, "file") == 0 ? "--token-file" : "--token");
		/* fall through */
	case TOKEN_KEPT:
		use_token(s, kept);
		kept = NULL;
		break;
	case TOKEN_CONFIGURED:
		if (kept && s->token && strcmp(kept, s->token) != 0)
			log_debug("the configured token is not the one kept in the state file, nor the one it replaced: using it");
		break;
	}
	if (kept)
		memset(kept, 0, strlen(kept));
	free(kept);
	free(replaced);
}

/* A register answer minted a token: the old one is dead. It is written to the
 * state file (atomically, mode 0600) before it is used, with the fingerprint
 * of the token it replaced, so a restart with that old token configured still
 * uses this one. */
static void adopt_token(struct bridge *b, char *tok)
{
	log_add_secret(tok);
	if (b->s->token) {
		char hash[SHA1_HEX_LEN + 1];
		sha1_hex(b->s->token, strlen(b->s->token), hash);
		b->st = jv_object_set(b->st, jv_string(STATE_REPLACED), jv_string(hash));
	} else {
		b->st = jv_object_delete(b->st, jv_string(STATE_REPLACED));
	}
	b->st = jv_object_set(b->st, jv_string(STATE_TOKEN), jv_string(tok));
	save_now(b);
	http_set_token(b->h, tok);
	use_token(b->s, tok);
	log_info("adopted the workspace token the platform minted at registration (kept in the state file)");
}

/* ---- registration ----------------------------------------------------- */

static void heartbeat_start(struct bridge *b);
static void check_workspace(struct bridge *b);

static void register_request(struct bridge *b, http_done_fn done)
{
	char *body = platform_register_body(b->s->workspace_id, b->s->agent_card);
	struct http_opts o = {
		.method = "POST", .path = "/registry/register", .body = body, .body_len = strlen(body),
		.max_attempts = 0, .done = done, .ctx = b,
	};
	http_start(b->h, &o);
	free(body);
}

/* A register answer: accepted or not, and a token minted with it adopted,
 * even when the bridge is already stopping. */
static bool registered(struct bridge *b, const struct http_resp *r)
{
	bool ok = r->status >= 200 && r->status < 300;
	char *tok = ok ? platform_adopted_token(r->body, r->len) : NULL;
	if (tok)
		adopt_token(b, tok);
	return ok;
}

static void on_register(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	bool ok = registered(b, r);
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
	char *line = xasprintf("registration of workspace %s refused (%s): %s", b->s->workspace_id, why, hint);
	free(why);
	if (r->status == 401) {
		/* A removed workspace's token is refused too: ask before blaming it. */
		free(b->session.refusal);
		b->session.refusal = line;
		check_workspace(b);
		return;
	}
	log_error("%s", line);
	free(line);
	bridge_stop(b, MC_EXIT_USAGE, "registration refused");
}

void session_register(struct bridge *b)
{
	register_request(b, on_register);
}

/* ---- a token refused after start-up ----------------------------------- */

static void on_status(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	struct session *se = &b->session;
	char *detail = NULL;
	enum workspace_status ws = platform_workspace_status(r, &detail);
	se->auth = AUTH_CHECKED;
	if (ws == WORKSPACE_REMOVED) {
		log_error("workspace %s was removed on the platform%s%s%s: its token is no longer accepted; stopping",
			  b->s->workspace_id, detail ? " (at " : "", detail ? detail : "", detail ? ")" : "");
		bridge_stop(b, MC_EXIT_REMOVED, "workspace removed");
	} else if (se->refusal) {
		log_error("%s", se->refusal);
		bridge_stop(b, MC_EXIT_USAGE, "registration refused");
	} else if (ws == WORKSPACE_PAUSED) {
		if (!se->paused_said)
			log_warn("workspace %s is paused on the platform; its calls are refused meanwhile", b->s->workspace_id);
		se->paused_said = true;
	} else {
		char *why = platform_describe(r);
		log_warn("the platform refuses the token (HTTP 401) although workspace %s exists (%s%s): retrying with backoff; "
			 "check MOLECULE_WORKSPACE_TOKEN or --token-file", b->s->workspace_id,
			 detail ? "status " : "", detail ? detail : why);
		free(why);
	}
	free(detail);
	free(se->refusal);
	se->refusal = NULL;
}

/* Asks once whether the workspace still exists: a removed one stops the bridge. */
static void check_workspace(struct bridge *b)
{
	b->session.auth = AUTH_CHECKING;
	b->session.checked_at = now_ms();
	char *path = xasprintf("/workspaces/%s", b->s->workspace_id);
	struct http_opts o = {
		.method = "GET", .path = path, .max_attempts = 3, .done = on_status, .ctx = b,
	};
	http_start(b->h, &o);
	free(path);
}

static void on_reregister(void *ctx, const struct http_resp *r)
{
	struct bridge *b = ctx;
	bool ok = registered(b, r);
	if (b->phase == PH_END)
		return;
	if (ok) {
		b->session.auth = AUTH_REREGISTERED;
		return;
	}
	char *why = platform_describe(r);
	log_warn("registering workspace %s again was refused (%s)", b->s->workspace_id, why);
	free(why);
	check_workspace(b);
}

/* A 401 after start-up: register again once, since the platform mints a new
 * token when the old one was revoked; if that does not help, ask once whether
 * the workspace was removed. Requests keep retrying meanwhile. */
static void unauthorized(struct bridge *b)
{
	struct session *se = &b->session;
	if (b->phase != PH_RUN && b->phase != PH_DRAIN)
		return;
	int64_t now = now_ms();
	bool may_register = !se->reregistered_at || now - se->reregistered_at >= SESSION_REREGISTER_MS;
	bool may_check = !se->checked_at || now - se->checked_at >= SESSION_REREGISTER_MS;
	if (se->auth == AUTH_OK && may_register) {
		log_warn("the platform refuses the token (HTTP 401): registering again, in case it minted a new one");
		se->auth = AUTH_REREGISTERING;
		se->reregistered_at = now;
		register_request(b, on_reregister);
	} else if ((se->auth == AUTH_OK || se->auth == AUTH_REREGISTERED) && may_check) {
		check_workspace(b);
	}
}

static bool watch_answer(void *ctx, const char *method, const char *path, const struct http_resp *r)
{
	struct bridge *b = ctx;
	char *org = platform_org_exempt(path) ? NULL : platform_org_refusal(r, b->s->org_id);
	if (org) {
		/* A configuration error, whatever the request: no retry mends it. */
		log_error("%s %s refused: %s", method, path, org);
		free(org);
		bridge_stop(b, MC_EXIT_USAGE, "org id refused");
		return true;
	}
	if (r->status == 401 && !r->stale_token && strcmp(path, "/registry/register") != 0)
		unauthorized(b);
	return false;
}

void session_attach(struct bridge *b)
{
	http_set_answer_hook(b->h, watch_answer, b);
	outbox_set_timing(b->ob, (long)(b->s->post_timeout * 1000), (int64_t)(b->s->stall_report * 1000));
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
	} else if (b->session.auth == AUTH_REREGISTERED || b->session.auth == AUTH_CHECKED) {
		/* The token works (again): a later 401 starts over. */
		b->session.auth = AUTH_OK;
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
		.is_busy = inbox_handed_count(b->ib) > 0,
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
