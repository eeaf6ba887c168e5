/* platform.h: the platform's endpoints: request bodies and paths, and what an answer means. */
/* Pure functions: no I/O here. docs/protocol.md describes the API they follow. */
#ifndef MC_PLATFORM_H
#define MC_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <jv.h>
#include "util.h"

#define PLATFORM_POST_MAX (1u << 20)   /* the platform's request body cap (for the canvas; 16 MiB for /a2a) */

/* {"id","agent_card","delivery_mode":"poll"}; card not consumed. Caller frees. */
char *platform_register_body(const char *ws, jv card);

struct heartbeat_info {
	long long uptime_seconds;
	long active_tasks;
	double error_rate;
	const char *sample_error;  /* NULL: left out */
	const char *current_task;  /* NULL: left out */
	bool is_busy;              /* messages are handed out and not answered */
};
char *platform_heartbeat_body(const char *ws, const struct heartbeat_info *hb);

/* /workspaces/<ws>/activity?type=a2a_receive&include=peer_info&limit=N and
 * since_id, or since_secs and before_ts (NULL: none). */
char *platform_activity_path(const char *ws, const char *since_id, long since_secs, const char *before_ts,
			     long limit);

/* The messageId of reply number n (1 for the first) to the activity row row_id
 * of workspace own_id: a name-based UUID, so that the reply is the same message
 * to the platform on every retry, after a restart, and when a crash made the
 * handler answer twice; the platform keeps one message per messageId. */
void platform_reply_id(const char *own_id, const char *row_id, int n, char out[UUID_LEN + 1]);

/* The body of a message to a peer: an A2A message/send with role agent, the
 * given messageId (the JSON-RPC id is fresh), the contextId and
 * metadata.in_reply_to (the messageId answered) when known, and no taskId (the
 * peer may not know the task). parts consumed. */
char *platform_a2a_body(jv parts, const char *context_id, const char *in_reply_to, const char *message_id);
/* The body of a reply to the canvas: {"message": text, "attachments"?: [...]}.
 * parts consumed. */
char *platform_notify_body(jv parts);

/* "HTTP 401: invalid workspace auth token" or the network error; caller frees. */
struct http_resp;
char *platform_describe(const struct http_resp *r);

/* What the answer to a post (/a2a or /notify) means for the message posted. */
enum post_verdict {
	POST_DELIVERED,    /* 2xx: every queued shape, or a push-mode peer's own answer */
	POST_RETRY,        /* the network, a timeout, 3xx, 408, 429, 5xx, any other 4xx, and
	                      the ones below without the platform's JSON error body (a
	                      proxy's page) */
	POST_UNAUTHORIZED, /* 401: retried; the token may have been re-minted */
	POST_REFUSED,      /* 400, 402, 403, 404, 413 with the platform's JSON error body:
	                      sending it again would be refused again */
	POST_CANVAS_OFF,   /* 403 talk_to_user_disabled: the owner turned canvas replies off */
};
enum post_verdict platform_post_verdict(const struct http_resp *r);
/* The answer carries the platform's own JSON error body: an object with an
 * "error" string, or 413's {"truncated":true,...}. */
bool platform_error_body(const struct http_resp *r);

/* What GET /workspaces/<id> says about the workspace. */
enum workspace_status {
	WORKSPACE_REMOVED,  /* 410: deleted; its token is dead for good */
	WORKSPACE_PAUSED,   /* 200 "status":"paused" */
	WORKSPACE_ACTIVE,   /* 200 with any other status */
	WORKSPACE_UNKNOWN,  /* anything else: no verdict */
};
/* *detail: the platform's "status" (for a removed one its "removed_at"),
 * printable and short, or NULL when absent; caller frees. */
enum workspace_status platform_workspace_status(const struct http_resp *r, char **detail);

/* A refusal that only the org id can mend: 400 TENANT_ORG_HEADER_REQUIRED (no
 * org header where the platform is multi-tenant) or a bare 404 with an empty
 * body (an org id it does not know). Returns what to tell the user (caller
 * frees), naming MOLECULE_ORG_ID and --org-id, or NULL for any other answer. */
char *platform_org_refusal(const struct http_resp *r, const char *org_id);

/* The org header is not needed on this path (register, heartbeat, health), so
 * its refusals say nothing about the org id. */
bool platform_org_exempt(const char *path);

/* The "auth_token" of a register answer, or NULL (caller frees). */
char *platform_adopted_token(const char *body, size_t len);

#endif
