/* platform.h: the platform's endpoints: request bodies and paths, and what an answer means. */
/* Pure functions: no I/O here. docs/protocol.md describes the API they follow. */
#ifndef MC_PLATFORM_H
#define MC_PLATFORM_H

#include <stddef.h>
#include <jv.h>

/* {"id","agent_card","delivery_mode":"poll"}; card not consumed. Caller frees. */
char *platform_register_body(const char *ws, jv card);

struct heartbeat_info {
	long long uptime_seconds;
	long active_tasks;
	double error_rate;
	const char *sample_error;  /* NULL: left out */
	const char *current_task;  /* NULL: left out */
};
char *platform_heartbeat_body(const char *ws, const struct heartbeat_info *hb);

/* /workspaces/<ws>/activity?type=a2a_receive&include=peer_info&limit=N and
 * since_id, or since_secs and before_ts (NULL: none). */
char *platform_activity_path(const char *ws, const char *since_id, long since_secs, const char *before_ts,
			     long limit);

/* The body of a reply to a peer: a new A2A message/send with role agent, fresh
 * ids, and the request's contextId/taskId when known. parts consumed. */
char *platform_a2a_body(jv parts, const char *context_id, const char *task_id);
/* The body of a reply to the canvas: {"message": text, "attachments"?: [...]}.
 * parts consumed. */
char *platform_notify_body(jv parts);

/* "HTTP 401: invalid workspace auth token" or the network error; caller frees. */
struct http_resp;
char *platform_describe(const struct http_resp *r);

/* A refusal that only the org id can mend: 400 TENANT_ORG_HEADER_REQUIRED (no
 * org header where the platform is multi-tenant) or a bare 404 with an empty
 * body (an org id it does not know). Returns what to tell the user (caller
 * frees), naming MOLECULE_ORG_ID and --org-id, or NULL for any other answer. */
char *platform_org_refusal(const struct http_resp *r, const char *org_id);

/* The "auth_token" of a register answer, or NULL (caller frees). */
char *platform_adopted_token(const char *body, size_t len);

#endif
