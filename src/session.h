/* session.h: the workspace's session with the platform: registration, its token, heartbeats and the error rate they report. */
#ifndef MC_SESSION_H
#define MC_SESSION_H

#include <stdbool.h>
#include <stdint.h>

struct bridge;

/* Outcomes over a rolling minute in one-second buckets: memory stays the same
 * however many messages a minute brings. */
#define SESSION_ERROR_SECONDS 60
struct session_errors {
	struct session_bucket { int64_t sec; long ok, errors; } buckets[SESSION_ERROR_SECONDS];
	char *sample;            /* the last error's text (200 bytes at most), or NULL */
};

struct session {
	int64_t next_heartbeat;
	bool heartbeat_busy;     /* one heartbeat at a time */
	struct session_errors errors;
};

/* No token given: the one a first registration handed out, kept in the state file. */
void session_token_from_state(struct bridge *b);
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
