/* fake.h: the fake platform's shared state, types and functions, private to tests/fake-platform. */
#ifndef FAKE_H
#define FAKE_H

#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jv.h>
#include <microhttpd.h>

#include "json.h"
#include "util.h"

#define BODY_CAP (1024 * 1024)           /* bodies over 1 MiB are truncated and failed */
#define A2A_BODY_CAP (16 * 1024 * 1024)  /* ... except /a2a, which takes 16 MiB, then 413 */
#define UPLOAD_MAX (100L * 1000 * 1000)  /* the largest pending upload */
#define LIMIT_DEFAULT 100
#define LIMIT_MAX 500
#define SINCE_SECS_MAX (30L * 24 * 3600)
#define TOKEN_LEN 43                     /* base64url of 32 bytes, no padding */
#define MESSAGES_MAX 100000              /* per /_control/messages call */
#define REQUESTS_KEPT 1000000            /* beyond this the oldest quarter of the log goes */
#define POSTS_KEPT 200000
#define EVENTS_BUFFERED 64               /* per event-stream subscriber; more are dropped */

/* Makes room in a dynamic array for one more element. */
#define GROW(arr, cap, len)                                               \
	do {                                                              \
		if ((len) >= (cap)) {                                     \
			(cap) = (cap) ? (cap) * 2 : 16;                   \
			(arr) = xrealloc((arr), (cap) * sizeof *(arr));   \
		}                                                         \
	} while (0)

/* ---------- support.c: clocks, randomness, timestamps, JSON fields, dying ---------- */

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
int64_t wall_ns(void);
void random_bytes(void *out, size_t n);
double random_unit(void);               /* uniform in [0, 1) */
/* RFC 3339 in UTC with the fraction's trailing zeros (and a bare dot) trimmed. */
void format_rfc3339(int64_t ns, char out[40]);
/* Parses RFC 3339 (fraction of up to 9 digits, Z or an offset) into ns since the epoch. */
bool parse_rfc3339(const char *s, int64_t *ns);
bool is_integer(double d);
/* A copy of n bytes (NULs included) with a NUL after them. */
char *bytes_dup(const char *s, size_t n);
/* Decodes standard base64 (padding optional, no whitespace) into a malloc'd buffer. */
bool base64_decode(const char *in, char **out, size_t *outlen);

/* Field access on outside JSON; obj is borrowed. */
jv_kind field_kind(jv obj, const char *key);   /* JV_KIND_INVALID when absent */
const char *field_str(jv obj, const char *key); /* lives as long as obj; NULL if no string */
bool field_num(jv obj, const char *key, double *out);
bool field_true(jv obj, const char *key);
jv jv_str_or_null(const char *s);
/* The body as JSON, or an invalid jv when it does not parse. */
jv parse_json(const char *s, size_t len);

/* ---------- the endpoints, named for faults and recorded posts ---------- */

enum endpoint {
	EP_REGISTER, EP_HEARTBEAT, EP_ACTIVITY, EP_A2A, EP_NOTIFY, EP_ACK, EP_WORKSPACE,
	EP_EVENTS, EP_UPLOAD, EP_UPLOAD_ACK, EP_HEALTH, EP_OTHER
};
extern const char *const endpoint_names[];
/* The endpoints whose requests are recorded as posts. */
bool endpoint_is_post(enum endpoint ep);

/* ---------- store.c: workspaces, tokens, rows, posts, the request log ---------- */

struct row {
	char id[UUID_LEN + 1];
	uint64_t seq;                   /* increases with insertion, platform-wide */
	int64_t created_ns;             /* rows sort by (created_ns, seq) */
	char *source_id;                /* NULL: null */
	char *message_id;               /* params.message.messageId, for the dedup index */
	char *attachments;              /* the include=peer_info attachments array, or NULL */
	char *json;                     /* the row exactly as /activity answers it */
	size_t json_len;
};

/* An index of rows by a string key: open addressing, at most half full. */
struct row_index {
	struct row **slots;
	size_t cap;
};

enum push_answer { PUSH_SYNC, PUSH_ACCEPTED, PUSH_QUEUED };

struct upload {
	char file_id[UUID_LEN + 1];
	char *name, *mime_type;
	char *data;                     /* NULL: size bytes made up while sent */
	uint64_t size;
	int64_t expires_ms;             /* monotonic; an acked upload does not expire */
	bool acked;
	unsigned fetched;
};

struct workspace {
	char *id;
	char *token;                    /* NULL: no live token, the next register mints one */
	char *name, *role;              /* shown to peers with include=peer_info */
	char *delivery_mode;            /* NULL until registered or set */
	enum push_answer push_answer;   /* how a push-mode workspace answers /a2a */
	unsigned push_delay_ms;         /* ... and how long a synchronous answer takes */
	bool registered;
	jv agent_card;                  /* null until registered */
	jv last_heartbeat;              /* null until the first heartbeat */
	int64_t last_heartbeat_ms;      /* wall clock; -1 until the first heartbeat */
	/* Status (lifecycle.c). */
	int64_t last_alive_ms;          /* monotonic: the last register or heartbeat */
	bool awaiting;                  /* no agent heard from for the awaiting period */
	int64_t degraded_until_ms;      /* monotonic: a failed register degrades for a while */
	bool error_degraded;            /* the heartbeat's error_rate said so */
	bool paused, talk_to_user;
	int64_t removed_ns;             /* wall clock; -1: not removed */
	int64_t last_acked_seq;         /* -1: never acked */
	/* Activity. */
	struct row **rows;              /* sorted by (created_ns, seq), oldest first */
	size_t nrows, cap;
	struct row_index by_id, by_message_id;
	/* Pending uploads (uploads.c). */
	struct upload *uploads;
	size_t nuploads, uploads_cap;
};

struct post {
	uint64_t seq;
	enum endpoint kind;
	char *path;
	int64_t t_ms;
	unsigned status;
	char *workspace_id;             /* what the kind names: the caller for a2a; may be NULL */
	jv headers;
	jv body;
};

struct logged_request {
	uint64_t seq;
	char method[16];
	char *path;
	unsigned status;                /* 0 while pending, and for connections reset by a fault */
	int64_t t_ms;
};

enum fault_action {
	FAULT_DELAY, FAULT_FAIL, FAULT_RESET, FAULT_RAW, FAULT_GENERATED, FAULT_REDIRECT,
	FAULT_EVERY_429, FAULT_STREAM
};

/* How an event stream misbehaves (faults on the events endpoint). */
struct stream_opts {
	long end_after_events;          /* -1: never */
	long end_after_ms;              /* -1: never */
	double drop_ratio;              /* chance that an event is dropped */
	bool other_replica;             /* accepted, but this workspace's events go elsewhere */
};

struct fault {
	bool any_endpoint;
	enum endpoint endpoint;
	char *workspace_id;             /* only requests whose path names it; NULL: any */
	enum fault_action action;
	unsigned status;
	char *body;
	size_t body_len;
	long retry_after;               /* -1: no Retry-After header */
	long remaining;                 /* matching requests left to hit; -1: unlimited */
	double ratio;                   /* chance that a matching request is hit */
	unsigned delay_ms;
	unsigned dribble_ms;            /* 0: the answer goes out at once */
	uint64_t body_bytes;            /* FAULT_GENERATED: the size of the made-up body */
	bool chunked;                   /* FAULT_GENERATED: no Content-Length */
	char *location;                 /* FAULT_REDIRECT */
	unsigned long every, seen;      /* every_429 */
	struct stream_opts stream;      /* FAULT_STREAM */
};

/* A fixed rate-limit window of one key (org id, token or client address). */
struct bucket {
	char *key;
	long used;
	int64_t window_start_ms;        /* monotonic */
};

/*
 * Every connection has its own thread (so an injected delay stalls only its own
 * connection); all of the state below, and every jv it holds (jv reference counts are
 * not atomic), is touched only with state_lock held. uuid_new draws from a static
 * pool, so it too is called only with state_lock held. state_changed is broadcast
 * when an event is published and when the fake stops.
 */
extern pthread_mutex_t state_lock;
extern pthread_cond_t state_changed;
extern atomic_bool stopping;

struct platform {
	/* Configuration, from the command line. */
	const char *org_id;             /* NULL: not multi-tenant */
	bool missing_org_404;           /* a missing org header gets the wrong one's bare 404 */
	long rate_limit;                /* requests per window; 0: off */
	bool rate_unlimited;            /* dev mode: X-RateLimit-Limit: unlimited, nothing else */
	long rate_window_ms;
	long awaiting_after_ms, sweep_ms, degraded_ms, upload_ttl_ms;
	bool acks_enabled, events_enabled;
	FILE *log;

	struct workspace **ws;
	size_t nws, ws_cap;
	int64_t last_created_ns;
	uint64_t next_request_seq, next_row_seq;

	struct post *posts;
	size_t nposts, posts_cap;
	struct logged_request *requests;
	size_t nrequests, requests_cap;
	struct fault *faults;
	size_t nfaults, faults_cap;
	struct bucket *buckets;
	size_t nbuckets, buckets_cap;
};
extern struct platform platform;

char *new_token(void);
struct workspace *ws_find(const char *id);
/* The workspace whose live token this is, or NULL. */
struct workspace *ws_by_token(const char *token);
struct workspace *ws_create(const char *id, char *token);
/* Index of the first row after (ns, seq) in w's order. */
size_t rows_upper_bound(const struct workspace *w, int64_t ns, uint64_t seq);
/* Index of the row with this id, or -1. */
long rows_find(const struct workspace *w, const char *id);
/* The row of w carrying this messageId, or NULL. */
struct row *rows_find_message(const struct workspace *w, const char *message_id);
/*
 * Logs an a2a_receive row into w; request_body is consumed (invalid: none); created_ns
 * < 0 means now, strictly after every row so far. Publishes its event.
 */
struct row *row_add(struct workspace *w, const char *source_id, const char *method,
		    jv request_body, int64_t created_ns);
void rows_remove(struct workspace *w, size_t from, size_t n);
/* Appends a post; its fields are taken over. */
void posts_add(struct post p);
void posts_clear(void);
/* Logs a platform request on arrival; returns its sequence number. */
uint64_t requests_log(const char *method, const char *path, int64_t t_ms);
void requests_set_status(uint64_t seq, unsigned status);
void requests_clear(void);
void store_free(void);

/* ---------- lifecycle.c: a workspace's status, and the sweep that finds silent ones ---------- */

/* "online", "awaiting_agent", "paused", "degraded" or "removed". */
const char *ws_status(const struct workspace *w);
/* A register or heartbeat: the agent is there. */
void ws_heard_from(struct workspace *w);
void ws_register_failed(struct workspace *w);
void ws_revoke(struct workspace *w);
void ws_remove(struct workspace *w);
/* Marks the workspaces silent for the awaiting period; returns how many it marked. */
size_t sweep_once(void);
void sweeper_start(void);
void sweeper_stop(void);

/* ---------- http.c: answers and the libmicrohttpd glue ---------- */

struct subscriber;

struct reply {
	unsigned status;
	char *body;                     /* malloc'd; NULL: empty body */
	size_t len;
	bool bare;                      /* no Content-Type (the org guard's empty 404) */
	char *content_type;             /* malloc'd; NULL: application/json */
	char *disposition;              /* malloc'd Content-Disposition, or NULL */
	long retry_after;               /* -1: no Retry-After header */
	bool reset;                     /* close the connection without answering */
	bool shutdown;                  /* stop the server once this answer is out */
	char *location;                 /* malloc'd Location header, or NULL */
	uint64_t generated;             /* > 0: body is this many made-up bytes, never allocated */
	bool pattern;                   /* the made-up bytes are file content, not a JSON array */
	bool chunked;                   /* the generated body goes without Content-Length */
	unsigned dribble_ms;            /* > 0: the body goes out one byte per this many ms */
	unsigned hold_ms;               /* the answer waits this long (a slow push-mode peer) */
	struct stream_opts stream;      /* how an event stream misbehaves */
	struct subscriber *events;      /* an event stream to answer with */
};

struct rate_headers {
	bool present, unlimited;
	long limit, remaining, reset;
};

/* One TCP connection: remembers the raw request target, which MHD strips of its query. */
struct conn {
	char ip[INET6_ADDRSTRLEN];
	char *uri;
};

struct request {
	struct conn *conn;
	char *uri;                      /* path with query, as sent */
	uint64_t seq;                   /* 0 for /_control requests */
	int64_t t_ms;
	char *body;
	size_t body_len, body_cap;
	bool body_too_big;
	bool shutdown;
};

void reply_init(struct reply *rp);
void reply_free(struct reply *rp);
void reply_json(struct reply *rp, unsigned status, jv v);
void reply_error(struct reply *rp, unsigned status, const char *message);
void reply_raw(struct reply *rp, unsigned status, const char *body, size_t len);
void reply_status(struct reply *rp, const char *status);
void reply_ok(struct reply *rp);
/* Answers rows[from..end) (step +1 oldest first, -1 newest first) as a JSON array. */
void reply_rows(struct reply *rp, struct row **rows, long from, long end, int step);
const char *header(struct MHD_Connection *c, const char *name);
/* A query argument, NULL when absent or empty. */
const char *query(struct MHD_Connection *c, const char *name);
/* The request headers as a JSON object, names lower-cased. */
jv request_headers(struct MHD_Connection *c);
/* Sleeps in slices, so that a shutdown does not wait for a long injected delay. */
void sleep_ms(unsigned ms);
struct MHD_Daemon *http_start(uint16_t port);

/* ---------- limits.c: the rate limit and injected faults ---------- */

/* Takes one request from the budget of key; false (and retry_after) when it is spent. */
bool rate_limit_take(const char *key, struct rate_headers *rh, long *retry_after);
void reply_too_many(struct reply *rp, long retry_after);
/* Applies the active faults to a request of ep about workspace ws (may be "");
 * true when one decided the answer. */
bool faults_apply(enum endpoint ep, const char *ws, struct reply *rp, unsigned *delay_ms);
bool endpoint_from_name(const char *name, enum endpoint *ep);
void faults_add(jv spec, struct reply *rp);
void faults_clear(void);
void buckets_clear(void);

/* ---------- api.c: routing, auth, tenancy, register, heartbeat, workspace status ---------- */

void api_handle(struct MHD_Connection *c, const char *method, const char *url,
		struct request *rq, struct reply *rp, struct rate_headers *rh);
/* Checks the bearer token (and X-Workspace-ID when sent) against w; answers 401 if not. */
bool authorised(struct MHD_Connection *c, const struct workspace *w, struct reply *rp);
/* The workspace whose token the request carries; answers 401 and returns NULL if none. */
struct workspace *token_caller(struct MHD_Connection *c, struct reply *rp);

/* ---------- activity.c: reading the own activity, and acknowledging it ---------- */

void api_activity(struct MHD_Connection *c, const char *id, struct reply *rp);
void api_ack(struct MHD_Connection *c, const char *id, jv body, struct reply *rp);
/* The attachments array include=peer_info shows for a request body (borrowed), or NULL. */
char *row_attachments(jv request_body);

/* ---------- messages.c: messages into workspaces: /a2a and /notify ---------- */

void api_a2a(struct MHD_Connection *c, const char *target_id, jv body, struct reply *rp);
void api_notify(struct MHD_Connection *c, const char *id, jv body, struct reply *rp);

/* ---------- uploads.c: pending canvas uploads ---------- */

void api_upload_content(struct MHD_Connection *c, const char *id, const char *file_id,
			struct reply *rp);
void api_upload_ack(struct MHD_Connection *c, const char *id, const char *file_id,
		    struct reply *rp);
void ctl_upload_create(jv spec, struct reply *rp);
void ctl_uploads_list(struct MHD_Connection *c, struct reply *rp);
void ctl_upload_expire(const char *file_id, struct reply *rp);
void uploads_free(struct workspace *w);

/* ---------- events.c: the server-sent event stream ---------- */

/* A new subscriber to w's events; fd is the client's socket. */
struct subscriber *events_subscribe(const struct workspace *w, const struct stream_opts *opts,
				    int fd);
/* Emits ACTIVITY_LOGGED for a row just logged into w (request_body borrowed). */
void events_row_logged(const struct workspace *w, const struct row *r, const char *method,
		       jv request_body);
size_t events_streams(const char *ws_id);
/* The open streams of a workspace, oldest first: events sent, dropped, still buffered. */
jv events_report(const char *ws_id);
/* The MHD content reader of an event stream, and its free callback. */
ssize_t events_read(void *cls, uint64_t pos, char *out, size_t max);
void events_free(void *cls);

/* ---------- control.c, control-messages.c: the control API under /_control ---------- */

void ctl_messages(jv spec, struct reply *rp);
void control_handle(struct MHD_Connection *c, const char *method, const char *url,
		    struct request *rq, struct reply *rp);

#endif
