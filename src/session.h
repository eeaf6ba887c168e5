/* session.h: the workspace's session with the platform: registration, its token, heartbeats and the error rate they report. */
#ifndef MC_SESSION_H
#define MC_SESSION_H

#include <stdbool.h>
#include <stdint.h>

struct bridge;
struct http_resp;

/* Outcomes over a rolling minute in one-second buckets: memory stays the same
 * however many messages a minute brings. */
#define SESSION_ERROR_SECONDS 60
struct session_errors {
	struct session_bucket { int64_t sec; long ok, errors; } buckets[SESSION_ERROR_SECONDS];
	char *sample;            /* the last error's text (200 bytes at most), or NULL */
};

/* Where the session stands with a token the platform refused (401) after
 * start-up: it may have been revoked and re-minted, or the workspace removed.
 * A heartbeat that goes through ends the episode; a new one registers again,
 * and asks again, at most once in SESSION_REREGISTER_MS (a refused register
 * degrades the workspace that long). */
#define SESSION_REREGISTER_MS 300000
enum session_auth {
	AUTH_OK,
	AUTH_REREGISTERING,      /* registering again, to adopt a token minted meanwhile */
	AUTH_REREGISTERED,       /* registered again: another 401 means it did not help */
	AUTH_CHECKING,           /* asking GET /workspaces/<id> whether it was removed */
	AUTH_CHECKED,            /* asked once: carry on with backoff until a heartbeat passes */
};

struct session {
	int64_t next_heartbeat;
	bool heartbeat_busy;     /* one heartbeat at a time */
	enum session_auth auth;
	int64_t reregistered_at; /* the last registration after a 401 (0: none) */
	int64_t checked_at;      /* the last GET /workspaces/<id> after a 401 (0: none) */
	bool paused_said;        /* "the workspace is paused" was logged */
	char *refusal;           /* start-up: the register refusal to report unless removed */
	struct session_errors errors;
};

/* Which token to use at start, given the configured one, the one kept in the
 * state file (minted by the platform at a registration) and the fingerprint
 * (SHA-1, hex) of the token that one replaced. NULL: none. */
enum session_token_pick {
	TOKEN_CONFIGURED,        /* no kept token, the same one, or one rotated by hand */
	TOKEN_KEPT,              /* nothing configured */
	TOKEN_KEPT_REPLACED,     /* the configured token is the one the kept token replaced */
};
enum session_token_pick session_token_pick(const char *configured, const char *kept, const char *replaced);
/* Applies session_token_pick to the settings and the state, saying once at
 * start-up when the kept token is used in place of the configured one. */
void session_token_from_state(struct bridge *b);
/* Once the client and the outbox exist: every answer is watched for an org id
 * the platform refuses (exit 2) and for a refused token; posts get their timing. */
void session_attach(struct bridge *b);

/* Registers the workspace; once accepted the bridge runs (PH_RUN). */
void session_register(struct bridge *b);
/* A heartbeat when one is due. */
void session_tick(struct bridge *b, int64_t now);
/* Milliseconds until the next heartbeat is due (negative: overdue). */
int64_t session_next_wakeup(const struct bridge *b, int64_t now);
/* One outcome of handling a message (err: failed, why: the text to sample). */
void session_outcome(struct bridge *b, bool err, const char *why);
void session_free(struct bridge *b);

/* The error-rate window itself, for a clock given explicitly. */
void session_errors_note(struct session_errors *e, int64_t now, bool err, const char *why);
/* Errors / outcomes over the last SESSION_ERROR_SECONDS (0 without any). With
 * no error left in the window the sample is dropped. */
double session_errors_rate(struct session_errors *e, int64_t now);
void session_errors_free(struct session_errors *e);

#endif
