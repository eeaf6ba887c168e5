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

#define BODY_CAP (1024 * 1024)          /* bodies over 1 MiB are truncated and failed */
#define LIMIT_DEFAULT 100
#define LIMIT_MAX 500
#define SINCE_SECS_MAX (30L * 24 * 3600)
#define TOKEN_LEN 43                     /* base64url of 32 bytes, no padding */
#define MESSAGES_MAX 100000              /* per /_control/messages call */
#define REQUESTS_KEPT 1000000            /* beyond this the oldest quarter of the log goes */
#define POSTS_KEPT 200000

/* Makes room in a dynamic array for one more element. */
#define GROW(arr, cap, len)                                               \
	do {                                                              \
		if ((len) >= (cap)) {                                     \
			(cap) = (cap) ? (cap) * 2 : 16;                   \
			(arr) = xrealloc((arr), (cap) * sizeof *(arr));   \
		}                                                         \
	} while (0)

/* ---------- support.c: clocks, randomness, JSON fields, dying ---------- */

void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
int64_t wall_us(void);
double monotonic_s(void);
void random_bytes(void *out, size_t n);
double random_unit(void);               /* uniform in [0, 1) */
void format_rfc3339(int64_t us, char out[32]);
bool is_integer(double d);
/* A copy of n bytes (NULs included) with a NUL after them. */
char *bytes_dup(const char *s, size_t n);

/* Field access on outside JSON; obj is borrowed. */
jv_kind field_kind(jv obj, const char *key);   /* JV_KIND_INVALID when absent */
const char *field_str(jv obj, const char *key); /* lives as long as obj; NULL if no string */
bool field_num(jv obj, const char *key, double *out);
bool field_true(jv obj, const char *key);
jv jv_str_or_null(const char *s);
/* The body as JSON, or an invalid jv when it does not parse. */
jv parse_json(const char *s, size_t len);

/* ---------- store.c: workspaces, rows, tokens, posts, the request log ---------- */

enum endpoint { EP_REGISTER, EP_HEARTBEAT, EP_ACTIVITY, EP_A2A, EP_NOTIFY, EP_OTHER };
extern const char *const endpoint_names[];

struct row {
	char id[UUID_LEN + 1];
	int64_t created_us;
	char *json;                     /* the row exactly as /activity answers it */
	size_t json_len;
};

struct workspace {
	char *id;
	char *token;                    /* NULL: none yet, the first register hands one out */
	char *delivery_mode;
	bool registered;
	jv agent_card;                  /* null until registered */
	jv last_heartbeat;              /* null until the first heartbeat */
	int64_t last_heartbeat_ms;      /* -1 until the first heartbeat */
	struct row **rows;              /* sorted by created_us, oldest first */
	size_t nrows, cap;
	struct row **index;             /* rows by id: open addressing, at most half full */
	size_t index_cap;
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
	FAULT_EVERY_429
};

struct fault {
	bool any_endpoint;
	enum endpoint endpoint;
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
};

struct bucket {
	char ip[INET6_ADDRSTRLEN];
	double tokens;
	double updated;
};

/*
 * Every connection has its own thread (so an injected delay stalls only its own
 * connection); all of the state below, and every jv it holds (jv reference counts are
 * not atomic), is touched only with state_lock held. uuid_new draws from a static
 * pool, so it too is called only with state_lock held.
 */
extern pthread_mutex_t state_lock;
extern atomic_bool stopping;

struct platform {
	const char *org_id;
	unsigned rate_limit;            /* per minute; 0: off */
	FILE *log;

	struct workspace **ws;
	size_t nws, ws_cap;
	int64_t last_created_us;
	uint64_t next_seq;

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
struct workspace *ws_create(const char *id, char *token);
/* Index of the first row created after us (rows are sorted by created_us). */
size_t rows_upper_bound(const struct workspace *w, int64_t us);
/* Index of the row with this id, or -1. */
long rows_find(const struct workspace *w, const char *id);
/* Adds an a2a_receive row; request_body consumed (invalid: none); created_us < 0: now. */
struct row *row_add(struct workspace *w, const char *source_id, const char *method,
		    jv request_body, int64_t created_us);
void rows_remove(struct workspace *w, size_t from, size_t n);
/* Appends a post; its fields are taken over. */
void posts_add(struct post p);
void posts_clear(void);
/* Logs a platform request on arrival; returns its sequence number. */
uint64_t requests_log(const char *method, const char *path, int64_t t_ms);
void requests_set_status(uint64_t seq, unsigned status);
void requests_clear(void);
void store_free(void);

/* ---------- http.c: answers and the libmicrohttpd glue ---------- */

struct reply {
	unsigned status;
	char *body;                     /* malloc'd; NULL: empty body */
	size_t len;
	bool bare;                      /* no Content-Type (the org guard's empty 404) */
	long retry_after;               /* -1: no Retry-After header */
	bool reset;                     /* close the connection without answering */
	bool shutdown;                  /* stop the server once this answer is out */
	char *location;                 /* malloc'd Location header, or NULL */
	uint64_t generated;             /* > 0: body is this many made-up bytes, never allocated */
	bool chunked;                   /* the generated body goes without Content-Length */
	unsigned dribble_ms;            /* > 0: the body goes out one byte per this many ms */
};

struct rate_headers {
	bool present;
	unsigned limit;
	long remaining, reset;
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
	size_t body_len;
	bool body_too_big;
	bool shutdown;
};

void reply_json(struct reply *rp, unsigned status, jv v);
void reply_error(struct reply *rp, unsigned status, const char *message);
void reply_raw(struct reply *rp, unsigned status, const char *body, size_t len);
void reply_status(struct reply *rp, const char *status);
void reply_ok(struct reply *rp);
/* Answers rows[first..end) (step +1 oldest first, -1 newest first) as a JSON array, at most limit. */
void reply_rows(struct reply *rp, struct row **rows, long first, long end, int step,
		size_t limit);
const char *header(struct MHD_Connection *c, const char *name);
/* A query argument, NULL when absent or empty. */
const char *query(struct MHD_Connection *c, const char *name);
/* The request headers as a JSON object, names lower-cased. */
jv request_headers(struct MHD_Connection *c);
/* Sleeps in slices, so that a shutdown does not wait for a long injected delay. */
void sleep_ms(unsigned ms);
struct MHD_Daemon *http_start(uint16_t port);

/* ---------- limits.c: the rate limit and injected faults ---------- */

struct rate_headers rate_limit_take(const char *ip, bool *allowed, long *retry_after);
void reply_too_many(struct reply *rp, long retry_after);
/* Applies the active faults to a request of ep; true when one decided the answer. */
bool faults_apply(enum endpoint ep, struct reply *rp, unsigned *delay_ms);
bool endpoint_from_name(const char *name, enum endpoint *ep);
void faults_add(jv spec, struct reply *rp);
void faults_clear(void);

/* ---------- api.c: the platform API ---------- */

void api_handle(struct MHD_Connection *c, const char *method, const char *url,
		struct request *rq, struct reply *rp, struct rate_headers *rh);

/* ---------- control.c: the control API under /_control ---------- */

void control_handle(struct MHD_Connection *c, const char *method, const char *url,
		    struct request *rq, struct reply *rp);

#endif
