/* send.c: --send: the {"to":...} lines of standard input posted as new messages, then exit. */
#include <config.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "dispatch.h"
#include "exitcode.h"
#include "http.h"
#include "inbox.h"
#include "json.h"
#include "linebuf.h"
#include "log.h"
#include "outbox.h"
#include "platform.h"
#include "reply.h"
#include "send.h"
#include "session.h"
#include "settings.h"
#include "state.h"
#include "util.h"

/* One new message: the line it came from and how it ended. */
struct sent {
	char id[UUID_LEN + 1];
	long line;
	char *dest;               /* for the report: a peer's id or "the canvas" */
	bool settled, ok;
	char *why;                /* refused: the platform's answer */
};

struct sender {
	const struct settings *s;
	struct inbox *ib;
	struct outbox *ob;
	struct sent *sent;
	size_t nsent, capsent;
	long line_no;
	long bad;
	bool org_refused;
};

static void bad_line(struct sender *sd, const char *why)
{
	log_error("line %ld: %s: skipped", sd->line_no, why);
	sd->bad++;
}

static void on_line(void *ctx, const char *line, size_t len, bool too_long)
{
	struct sender *sd = ctx;
	sd->line_no++;
	if (too_long) {
		bad_line(sd, "longer than 4 MiB");
		return;
	}
	if (len == strspn(line, " \t"))
		return; /* blank */
	if (memchr(line, '\0', len)) {
		bad_line(sd, "contains a NUL byte");
		return;
	}
	jv v = jv_parse_sized(line, (int)len);
	if (!jv_is_valid(v)) {
		char *why = json_error(v);
		char *msg = xasprintf("not JSON (%s)", why);
		bad_line(sd, msg);
		free(msg);
		free(why);
		return;
	}
	bool has_to = json_has(v, "to");
	struct reply r;
	char *err = NULL;
	if (reply_parse(v, &r, &err) != 0 || !has_to) {
		bad_line(sd, err ? err : "not a new message: --send needs \"to\" (a workspace id or \"canvas\")");
		free(err);
		reply_free(&r);
		return;
	}
	struct message *m = outbox_new_message(sd->ob, sd->s->workspace_id, r.to, jv_copy(r.parts), r.context_id, &err);
	if (!m) {
		bad_line(sd, err);
		free(err);
		reply_free(&r);
		return;
	}
	if (sd->nsent == sd->capsent) {
		sd->capsent = sd->capsent ? sd->capsent * 2 : 16;
		sd->sent = xrealloc(sd->sent, sd->capsent * sizeof *sd->sent);
	}
	struct sent *e = &sd->sent[sd->nsent++];
	*e = (struct sent){ .line = sd->line_no, .dest = xstrdup(r.to ? r.to : "the canvas") };
	memcpy(e->id, m->id, sizeof e->id);
	reply_free(&r);
}

/* Standard input to its end, line by line. false: it could not be read. */
static bool read_lines(struct sender *sd)
{
	struct linebuf lb;
	linebuf_init(&lb, DISPATCH_LINE_MAX);
	char chunk[65536];
	bool ok = true;
	for (;;) {
		ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_error("reading standard input: %s", strerror(errno));
			ok = false;
			break;
		}
		if (n == 0)
			break;
		linebuf_feed(&lb, chunk, (size_t)n, on_line, sd);
	}
	linebuf_finish(&lb, on_line, sd);
	linebuf_free(&lb);
	return ok;
}

static void on_settled(void *ctx, const char *msg_id, bool ok, const char *why)
{
	struct sender *sd = ctx;
	for (size_t i = 0; i < sd->nsent; i++)
		if (strcmp(sd->sent[i].id, msg_id) == 0) {
			sd->sent[i].settled = true;
			sd->sent[i].ok = ok;
			sd->sent[i].why = why ? xstrdup(why) : NULL;
		}
}

/* An org id the platform refuses stops everything: no post can succeed. */
static bool watch_answer(void *ctx, const char *method, const char *path, const struct http_resp *r)
{
	struct sender *sd = ctx;
	char *org = platform_org_exempt(path) ? NULL : platform_org_refusal(r, sd->s->org_id);
	if (!org)
		return false;
	if (!sd->org_refused)
		log_error("%s %s refused: %s", method, path, org);
	free(org);
	sd->org_refused = true;
	return true;
}

/* The token: the configured one, or the one the platform minted and a bridge
 * kept in the state file (read without the lock: it is replaced atomically). */
static char *pick_token(const struct settings *s)
{
	jv st = jv_null();
	char *err = NULL;
	if (state_load(s->state_dir, s->workspace_id, &st, &err) < 0) {
		log_warn("%s: using the configured token only", err);
		free(err);
	}
	char *kept = json_string_dup(st, "auth_token");
	char *replaced = json_string_dup(st, "auth_token_replaced");
	jv_free(st);
	char *token = session_token_pick(s->token, kept, replaced) == TOKEN_CONFIGURED
			      ? (s->token ? xstrdup(s->token) : NULL)
			      : kept;
	if (token != kept && kept) {
		memset(kept, 0, strlen(kept));
		free(kept);
	}
	free(replaced);
	if (token)
		log_add_secret(token);
	return token;
}

/* Posts until everything is settled, or --drain-timeout is over and no
 * attempt is under way. */
static void post_all(struct sender *sd, struct http *h)
{
	int64_t deadline = now_ms() + (int64_t)(sd->s->drain_timeout * 1000);
	while (!sd->org_refused) {
		outbox_pump(sd->ob);
		unsigned long finished = http_completed(h);
		http_process(h, now_ms());
		int64_t now = now_ms();
		if (outbox_unposted(sd->ob) == 0 || sd->org_refused || (now >= deadline && http_active(h) == 0))
			break;
		int64_t wait = wait_min(http_next_due(h, now), deadline > now ? deadline - now : 0);
		if (wait < 0 || wait > 1000)
			wait = 1000;
		if (http_completed(h) != finished)
			wait = 0; /* a post settled: the next to the same place may go now */
		http_wait(h, wait);
	}
}

int send_run(struct settings *s)
{
	char *token = pick_token(s);
	if (!token) {
		log_error("no workspace token: set MOLECULE_WORKSPACE_TOKEN or --token-file");
		return MC_EXIT_USAGE;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	struct http *h = http_new(s->api_url, s->workspace_id, s->org_id);
	http_set_token(h, token);
	memset(token, 0, strlen(token));
	free(token);
	jv empty = jv_object();
	struct sender sd = { .s = s, .ib = inbox_new(s->workspace_id, empty) };
	jv_free(empty);
	sd.ob = outbox_new(sd.ib, h, on_settled, &sd);
	outbox_set_timing(sd.ob, (long)(s->post_timeout * 1000), (int64_t)(s->stall_report * 1000));
	http_set_answer_hook(h, watch_answer, &sd);

	bool read_ok = read_lines(&sd);
	post_all(&sd, h);

	long failed = 0;
	for (size_t i = 0; i < sd.nsent; i++) {
		struct sent *e = &sd.sent[i];
		if (!e->ok) {
			failed++;
			log_error("line %ld: the message to %s was not posted (%s)", e->line, e->dest,
				  e->settled ? e->why : sd.org_refused ? "the org id was refused" : "still failing at --drain-timeout");
		}
		free(e->dest);
		free(e->why);
	}
	free(sd.sent);
	outbox_free(sd.ob);
	http_free(h);
	inbox_free(sd.ib);
	curl_global_cleanup();
	log_debug("--send: %zu messages, %ld not posted, %ld bad lines", sd.nsent, failed, sd.bad);
	if (sd.org_refused)
		return MC_EXIT_USAGE;
	if (failed || !read_ok)
		return MC_EXIT_ERROR;
	return sd.bad ? MC_EXIT_USAGE : MC_EXIT_OK;
}
