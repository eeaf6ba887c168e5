/* test_platform.c: what the platform's answers to a post mean, reply bodies and their ids, the workspace's status, and which token to use at start. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "http.h"
#include "json.h"
#include "parts.h"
#include "platform.h"
#include "session.h"
#include "sha1.h"
#include "util.h"

#define OWN "00000000-0000-4000-8000-000000000000"
#define ROW "cccccccc-0000-4000-8000-000000000001"

static struct http_resp answer(long status, const char *body)
{
	return (struct http_resp){ .status = status, .body = body, .len = strlen(body) };
}

static enum post_verdict verdict(long status, const char *body)
{
	struct http_resp r = answer(status, body);
	return platform_post_verdict(&r);
}

static void test_verdicts(void)
{
	is_int(verdict(200, "{\"status\":\"queued\",\"delivery_mode\":\"poll\"}"), POST_DELIVERED, "200 queued (a poll-mode peer)");
	is_int(verdict(202, "{\"queued\":true,\"queue_id\":\"q\"}"), POST_DELIVERED, "202 queued");
	is_int(verdict(200, "{\"status\":\"queued\",\"queued\":true}"), POST_DELIVERED, "200 queued:true");
	is_int(verdict(200, "{\"jsonrpc\":\"2.0\",\"result\":{}}"), POST_DELIVERED, "a push-mode peer's own answer");
	is_int(verdict(204, ""), POST_DELIVERED, "any 2xx");
	is_int(verdict(0, ""), POST_RETRY, "no answer");
	is_int(verdict(302, ""), POST_RETRY, "a redirect");
	is_int(verdict(408, "{\"error\":\"timeout\"}"), POST_RETRY, "408");
	is_int(verdict(429, "{\"error\":\"rate limit exceeded\",\"retry_after\":0}"), POST_RETRY, "429");
	is_int(verdict(502, ""), POST_RETRY, "502");
	is_int(verdict(503, "{\"error\":\"x\",\"code\":\"platform_unavailable\"}"), POST_RETRY, "503");
	is_int(verdict(401, "{\"error\":\"invalid workspace auth token\"}"), POST_UNAUTHORIZED, "401");
	is_int(verdict(413, "{\"truncated\":true,\"max_bytes\":16777216}"), POST_REFUSED, "413 truncated");
	is_int(verdict(402, "{\"error\":\"budget\"}"), POST_REFUSED, "402");
	is_int(verdict(403, "{\"error\":\"hierarchy\"}"), POST_REFUSED, "403");
	is_int(verdict(400, "{\"error\":\"invalid JSON\"}"), POST_REFUSED, "400");
	is_int(verdict(404, "{\"error\":\"workspace not found\"}"), POST_REFUSED, "404 with the platform's body");
	is_int(verdict(403, "{\"error\":\"talk_to_user_disabled\"}"), POST_CANVAS_OFF, "403 talk_to_user_disabled");
	is_int(verdict(400, "<html><body>Bad Request</body></html>"), POST_RETRY, "a proxy's HTML 400");
	is_int(verdict(404, ""), POST_RETRY, "an empty 404");
	is_int(verdict(403, "Forbidden"), POST_RETRY, "a 403 in plain text");
	is_int(verdict(400, "{\"message\":\"no error field\"}"), POST_RETRY, "JSON without \"error\"");
	is_int(verdict(400, "[\"error\"]"), POST_RETRY, "JSON that is no object");
	is_int(verdict(413, "{\"error\":7}"), POST_RETRY, "an error that is no string");
	is_int(verdict(409, "{\"error\":\"conflict\"}"), POST_RETRY, "a 4xx the platform does not call final: 409");
	is_int(verdict(422, "{\"error\":\"x\"}"), POST_RETRY, "422");
}

static void test_org_and_status(void)
{
	struct http_resp r = answer(404, "");
	char *why = platform_org_refusal(&r, "org-a");
	ok(why && strstr(why, "org-a") && strstr(why, "MOLECULE_ORG_ID") && strstr(why, "--org-id"), "a bare 404 names the org id");
	free(why);
	r = answer(400, "{\"error\":\"missing tenant routing header\",\"code\":\"TENANT_ORG_HEADER_REQUIRED\"}");
	why = platform_org_refusal(&r, NULL);
	ok(why && strstr(why, "MOLECULE_ORG_ID"), "TENANT_ORG_HEADER_REQUIRED");
	free(why);
	r = answer(404, "{\"error\":\"workspace not found\"}");
	ok(!platform_org_refusal(&r, NULL), "a 404 with a body is no org refusal");
	ok(platform_org_exempt("/registry/register") && platform_org_exempt("/registry/heartbeat") &&
	   !platform_org_exempt("/workspaces/" OWN "/a2a") && !platform_org_exempt("/workspaces/" OWN),
	   "register and heartbeat need no org header; the rest does");

	char *detail;
	r = answer(410, "{\"error\":\"workspace removed\",\"removed_at\":\"2026-08-01T10:00:00Z\"}");
	is_int(platform_workspace_status(&r, &detail), WORKSPACE_REMOVED, "410: removed");
	is_str(detail, "2026-08-01T10:00:00Z", "  when");
	free(detail);
	r = answer(200, "{\"id\":\"x\",\"status\":\"paused\"}");
	is_int(platform_workspace_status(&r, &detail), WORKSPACE_PAUSED, "paused");
	free(detail);
	r = answer(200, "{\"status\":\"online\"}");
	is_int(platform_workspace_status(&r, &detail), WORKSPACE_ACTIVE, "online");
	is_str(detail, "online", "  its status");
	free(detail);
	r = answer(200, "{\"status\":\"a\\nb\"}");
	platform_workspace_status(&r, &detail);
	is_str(detail, "a?b", "a status is printable");
	free(detail);
	r = answer(500, "");
	is_int(platform_workspace_status(&r, &detail), WORKSPACE_UNKNOWN, "anything else: no verdict");
	ok(detail == NULL, "  and no detail");
}

static void test_reply_bodies(void)
{
	char a[UUID_LEN + 1], b[UUID_LEN + 1], c[UUID_LEN + 1];
	platform_reply_id(OWN, ROW, 1, a);
	platform_reply_id(OWN, ROW, 1, b);
	is_str(a, b, "reply ids: the same for the same reply");
	ok(uuid_valid(a) && a[14] == '5', "reply ids: name-based UUIDs");
	platform_reply_id(OWN, ROW, 2, c);
	ok(strcmp(a, c) != 0, "reply ids: the second reply to a message has another");
	platform_reply_id("00000000-0000-4000-8000-000000000009", ROW, 1, c);
	ok(strcmp(a, c) != 0, "reply ids: another workspace's reply has another");

	char *body = platform_a2a_body(jv_array_append(jv_array(), parts_text_part("hi")), "ctx", "in-1", a);
	jv v = jv_parse(body);
	free(body);
	jv params = json_field(v, "params");
	jv m = json_field(params, "message");
	jv_free(params);
	char *got = json_dump(jv_copy(m), NULL);
	char *want = xasprintf("{\"role\":\"agent\",\"messageId\":\"%s\",\"parts\":[{\"kind\":\"text\",\"text\":\"hi\"}],"
			       "\"contextId\":\"ctx\",\"metadata\":{\"in_reply_to\":\"in-1\"}}", a);
	is_str(got, want, "a reply: its id, the context, what it answers, no taskId");
	free(got);
	free(want);
	jv id = json_field(v, "id");
	ok(json_is_uuid(id) && strcmp(jv_string_value(id), a) != 0, "the JSON-RPC id is a fresh one");
	jv_free(id);
	jv_free(m);
	jv_free(v);
	body = platform_a2a_body(jv_array_append(jv_array(), parts_text_part("news")), NULL, NULL, b);
	ok(!strstr(body, "contextId") && !strstr(body, "metadata") && !strstr(body, "taskId"), "a new message: none of those");
	free(body);

	struct heartbeat_info hb = { .uptime_seconds = 1, .is_busy = true };
	body = platform_heartbeat_body(OWN, &hb);
	ok(strstr(body, "\"is_busy\":true") != NULL, "heartbeat: is_busy");
	free(body);
}

static void test_token_pick(void)
{
	const char *old = "old-token-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	const char *minted = "minted-token-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
	char replaced[SHA1_HEX_LEN + 1];
	sha1_hex(old, strlen(old), replaced);
	is_int(session_token_pick(old, NULL, NULL), TOKEN_CONFIGURED, "nothing kept: the configured token");
	is_int(session_token_pick(NULL, minted, replaced), TOKEN_KEPT, "nothing configured: the kept one");
	is_int(session_token_pick(NULL, NULL, NULL), TOKEN_CONFIGURED, "neither: none");
	is_int(session_token_pick(old, minted, replaced), TOKEN_KEPT_REPLACED,
	       "the configured token is the one the kept one replaced: the kept one");
	is_int(session_token_pick("rotated-by-hand-ccccccccccccccccccccccccccccc", minted, replaced), TOKEN_CONFIGURED,
	       "a token rotated by hand: the configured one");
	is_int(session_token_pick(minted, minted, replaced), TOKEN_CONFIGURED, "the same token");
	is_int(session_token_pick(old, minted, NULL), TOKEN_CONFIGURED, "no fingerprint kept: the configured one");
}

int main(void)
{
	test_verdicts();
	test_org_and_status();
	test_reply_bodies();
	test_token_pick();
	return done_testing();
}
