/* platform.c: request bodies, paths and answer classification for the platform's API. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "platform.h"
#include "http.h"
#include "parts.h"
#include "json.h"
#include "util.h"

static char *dump(jv v)
{
	return json_dump(v, NULL);
}

char *platform_register_body(const char *ws, jv card)
{
	jv o = jv_object();
	o = jv_object_set(o, jv_string("id"), jv_string(ws));
	o = jv_object_set(o, jv_string("agent_card"), jv_copy(card));
	o = jv_object_set(o, jv_string("delivery_mode"), jv_string("poll"));
	return dump(o);
}

char *platform_heartbeat_body(const char *ws, const struct heartbeat_info *hb)
{
	/* Integers are printed by hand: jv numbers are doubles and the platform
	 * rejects "3.0" where it wants an integer. runtime_state is never sent:
	 * any value but "" keeps a degraded workspace from recovering. */
	jv o = jv_object();
	o = jv_object_set(o, jv_string("workspace_id"), jv_string(ws));
	if (hb->sample_error)
		o = jv_object_set(o, jv_string("sample_error"), jv_string(hb->sample_error));
	if (hb->current_task)
		o = jv_object_set(o, jv_string("current_task"), jv_string(hb->current_task));
	o = jv_object_set(o, jv_string("is_busy"), jv_bool(hb->is_busy));
	char *rest = dump(o);
	double er = hb->error_rate;
	if (!(er >= 0))
		er = 0;
	if (er > 1)
		er = 1;
	/* rest is "{...}": splice the numbers in front of its fields. */
	char *out = xasprintf("{\"uptime_seconds\":%lld,\"active_tasks\":%ld,\"error_rate\":%.4f,%s",
			      hb->uptime_seconds, hb->active_tasks, er, rest + 1);
	free(rest);
	return out;
}

char *platform_activity_path(const char *ws, const char *since_id, long since_secs, const char *before_ts,
			     long limit)
{
	if (since_id && *since_id)
		return xasprintf("/workspaces/%s/activity?type=a2a_receive&include=peer_info&limit=%ld&since_id=%s",
				 ws, limit, since_id);
	/* before_ts is ours (digits, '-', ':', '.', 'T', 'Z'): nothing to escape. */
	return xasprintf("/workspaces/%s/activity?type=a2a_receive&include=peer_info&limit=%ld&since_secs=%ld%s%s",
			 ws, limit, since_secs, before_ts ? "&before_ts=" : "", before_ts ? before_ts : "");
}

/* The namespace of reply ids: a fixed UUID of this program's own, so its ids
 * never collide with another program's name-based ids. */
#define REPLY_ID_NAMESPACE "ce1ccf52-4350-4776-aafb-dcb2f014ace4"

void platform_reply_id(const char *own_id, const char *row_id, int n, char out[UUID_LEN + 1])
{
	char *name = xasprintf("%s/%s/%d", own_id, row_id, n);
	uuid_name(REPLY_ID_NAMESPACE, name, out);
	free(name);
}

char *platform_a2a_body(jv parts, const char *context_id, const char *in_reply_to, const char *message_id)
{
	char rpc_id[UUID_LEN + 1];
	uuid_new(rpc_id);
	jv m = jv_object();
	m = jv_object_set(m, jv_string("role"), jv_string("agent"));
	m = jv_object_set(m, jv_string("messageId"), jv_string(message_id));
	m = jv_object_set(m, jv_string("parts"), parts);
	if (context_id)
		m = jv_object_set(m, jv_string("contextId"), jv_string(context_id));
	if (in_reply_to)
		m = jv_object_set(m, jv_string("metadata"),
				  jv_object_set(jv_object(), jv_string("in_reply_to"), jv_string(in_reply_to)));
	jv o = jv_object();
	o = jv_object_set(o, jv_string("jsonrpc"), jv_string("2.0"));
	o = jv_object_set(o, jv_string("id"), jv_string(rpc_id));
	o = jv_object_set(o, jv_string("method"), jv_string("message/send"));
	o = jv_object_set(o, jv_string("params"), jv_object_set(jv_object(), jv_string("message"), m));
	return dump(o);
}

char *platform_notify_body(jv parts)
{
	/* The canvas takes text plus attachments: text parts are joined, file
	 * parts become attachments, data parts are shown as JSON text. */
	struct buf text = { 0 };
	jv att = jv_array();
	if (jv_get_kind(parts) == JV_KIND_ARRAY) {
		int n = jv_array_length(jv_copy(parts));
		for (int i = 0; i < n; i++) {
			jv p = jv_array_get(jv_copy(parts), i);
			const char *k = parts_kind(p);
			if (k && strcmp(k, "text") == 0) {
				jv t = json_field(p, "text");
				if (jv_get_kind(t) == JV_KIND_STRING) {
					if (text.len)
						buf_append(&text, "\n", 1);
					buf_append(&text, jv_string_value(t), (size_t)jv_string_length_bytes(jv_copy(t)));
				}
				jv_free(t);
			} else if (k && strcmp(k, "file") == 0) {
				jv f = json_field(p, "file");
				if (jv_get_kind(f) == JV_KIND_OBJECT) {
					jv a = jv_object();
					static const char *keys[] = { "uri", "name", "mimeType", "size" };
					for (size_t j = 0; j < sizeof keys / sizeof *keys; j++) {
						jv v = json_field(f, keys[j]);
						if (jv_get_kind(v) != JV_KIND_NULL)
							a = jv_object_set(a, jv_string(keys[j]), v);
						else
							jv_free(v);
					}
					att = jv_array_append(att, a);
				}
				jv_free(f);
			} else if (k && strcmp(k, "data") == 0) {
				/* A data part without data shows as null. */
				jv d = json_field(p, "data");
				if (text.len)
					buf_append(&text, "\n", 1);
				json_write(&text, d);
			}
			jv_free(p);
		}
	}
	jv_free(parts);
	jv o = jv_object();
	/* The platform refuses an empty message; an attachment-only reply says so. */
	o = jv_object_set(o, jv_string("message"),
			  jv_string(text.len ? text.p : (jv_array_length(jv_copy(att)) ? "(attachment)" : "(empty reply)")));
	if (jv_array_length(jv_copy(att)) > 0)
		o = jv_object_set(o, jv_string("attachments"), att);
	else
		jv_free(att);
	buf_free(&text);
	return dump(o);
}

char *platform_describe(const struct http_resp *r)
{
	if (r->status == 0)
		return xstrdup(r->error ? r->error : "no answer");
	if (r->error) /* a redirect: where it pointed says more than its body */
		return xasprintf("HTTP %ld: %s", r->status, r->error);
	/* Prefer the platform's own {"error": "..."} text, short and on one line. */
	char *detail = NULL;
	if (r->len > 0 && r->len < 65536) {
		jv v = jv_parse_sized(r->body, (int)r->len);
		jv e = json_field(v, "error");
		if (jv_get_kind(e) == JV_KIND_STRING)
			detail = xstrndup(jv_string_value(e), 200);
		jv_free(e);
		jv_free(v);
	}
	char *out = detail ? xasprintf("HTTP %ld: %s", r->status, detail)
			   : xasprintf("HTTP %ld", r->status);
	free(detail);
	return out;
}

/* The answer's body as JSON, or jv_invalid() when it is empty, too large to
 * bother with, or not JSON. */
static jv answer_json(const struct http_resp *r)
{
	if (r->len == 0 || r->len >= 65536)
		return jv_invalid();
	return jv_parse_sized(r->body, (int)r->len);
}

bool platform_error_body(const struct http_resp *r)
{
	jv v = answer_json(r);
	jv e = json_field(v, "error"), t = json_field(v, "truncated");
	bool ours = jv_get_kind(e) == JV_KIND_STRING || (r->status == 413 && jv_get_kind(t) == JV_KIND_TRUE);
	jv_free(e);
	jv_free(t);
	jv_free(v);
	return ours;
}

enum post_verdict platform_post_verdict(const struct http_resp *r)
{
	if (r->status >= 200 && r->status < 300)
		return POST_DELIVERED;
	if (r->status == 401)
		return POST_UNAUTHORIZED;
	/* Only the refusals the platform documents as final drop a reply, and only
	 * when it says so in its own words: a proxy's error page in front of it is
	 * no reason to. */
	bool final = r->status == 400 || r->status == 402 || r->status == 403 || r->status == 404 || r->status == 413;
	if (!final || !platform_error_body(r))
		return POST_RETRY;
	if (r->status == 403) {
		jv v = answer_json(r);
		jv e = json_field(v, "error");
		bool off = jv_get_kind(e) == JV_KIND_STRING && strcmp(jv_string_value(e), "talk_to_user_disabled") == 0;
		jv_free(e);
		jv_free(v);
		if (off)
			return POST_CANVAS_OFF;
	}
	return POST_REFUSED;
}

enum workspace_status platform_workspace_status(const struct http_resp *r, char **detail)
{
	*detail = NULL;
	if (r->status != 410 && r->status != 200)
		return WORKSPACE_UNKNOWN;
	jv v = answer_json(r);
	char *text = json_string_dup(v, r->status == 410 ? "removed_at" : "status");
	jv_free(v);
	if (text && strlen(text) > 64)
		text[64] = '\0';
	if (text)
		for (char *p = text; *p; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
				*p = '?';
	*detail = text;
	if (r->status == 410)
		return WORKSPACE_REMOVED;
	return text && strcmp(text, "paused") == 0 ? WORKSPACE_PAUSED : WORKSPACE_ACTIVE;
}

char *platform_org_refusal(const struct http_resp *r, const char *org_id)
{
	if (r->status == 404 && r->len == 0)
		return org_id ? xasprintf("the platform knows no org \"%.100s\" (a bare HTTP 404): check MOLECULE_ORG_ID or --org-id",
					  org_id)
			      : xstrdup("the platform answers a bare HTTP 404: on a multi-tenant platform, set MOLECULE_ORG_ID or --org-id");
	if (r->status != 400)
		return NULL;
	jv v = answer_json(r);
	jv code = json_field(v, "code");
	bool tenant = jv_get_kind(code) == JV_KIND_STRING && strcmp(jv_string_value(code), "TENANT_ORG_HEADER_REQUIRED") == 0;
	jv_free(code);
	jv_free(v);
	return tenant ? xstrdup("the platform is multi-tenant and needs an org id: set MOLECULE_ORG_ID or --org-id") : NULL;
}

bool platform_org_exempt(const char *path)
{
	return strcmp(path, "/registry/register") == 0 || strcmp(path, "/registry/heartbeat") == 0 ||
	       strcmp(path, "/health") == 0;
}

char *platform_adopted_token(const char *body, size_t len)
{
	if (len == 0 || len > 65536)
		return NULL;
	jv v = jv_parse_sized(body, (int)len);
	char *tok = NULL;
	jv t = json_field(v, "auth_token");
	if (jv_get_kind(t) == JV_KIND_STRING && jv_string_length_bytes(jv_copy(t)) > 0)
		tok = xstrdup(jv_string_value(t));
	jv_free(t);
	jv_free(v);
	return tok;
}
