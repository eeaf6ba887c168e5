/* The fake Molecule platform the tests run against: CONTRACT.md on loopback, plus /_control. */
#include <config.h>

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jv.h>
#include <microhttpd.h>

#define BODY_CAP (1024 * 1024)          /* CONTRACT: bodies over 1 MiB are truncated and failed */
#define LIMIT_DEFAULT 100
#define LIMIT_MAX 500
#define SINCE_SECS_MAX (30L * 24 * 3600)
#define UUID_LEN 36
#define TOKEN_LEN 43                     /* base64url of 32 bytes, no padding */
#define MESSAGES_MAX 100000              /* per /_control/messages call */
#define REQUESTS_KEPT 1000000            /* beyond this the oldest quarter of the log goes */
#define POSTS_KEPT 200000

/* ---------- small utilities ---------- */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fake-platform: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		die("out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;
	return memcpy(xmalloc(n), s, n);
}

static char *xmemdup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* Makes room in a dynamic array for one more element. */
#define GROW(arr, cap, len)                                               \
	do {                                                              \
		if ((len) >= (cap)) {                                     \
			(cap) = (cap) ? (cap) * 2 : 16;                   \
			(arr) = xrealloc((arr), (cap) * sizeof *(arr));   \
		}                                                         \
	} while (0)

struct buf {
	char *p;
	size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		while (b->len + n + 1 > b->cap)
			b->cap = b->cap ? b->cap * 2 : 256;
		b->p = xrealloc(b->p, b->cap);
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static int64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double monotonic_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void random_bytes(void *out, size_t n)
{
	unsigned char *p = out;
	while (n > 0) {
		ssize_t got = getrandom(p, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			die("getrandom: %s", strerror(errno));
		}
		p += got;
		n -= (size_t)got;
	}
}

/* Uniform in [0, 1). */
static double random_unit(void)
{
	uint64_t x;
	random_bytes(&x, sizeof x);
	return (double)(x >> 11) * 0x1.0p-53;
}

static void new_uuid(char out[UUID_LEN + 1])
{
	unsigned char b[16];
	random_bytes(b, sizeof b);
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, UUID_LEN + 1,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
		 b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

static char *new_token(void)
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char b[32];
	char *tok = xmalloc(TOKEN_LEN + 1);
	size_t o = 0;

	random_bytes(b, sizeof b);
	for (size_t i = 0; i < 32; i += 3) {
		uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 |
			     (i + 2 < 32 ? b[i + 2] : 0);
		tok[o++] = alphabet[v >> 18 & 63];
		tok[o++] = alphabet[v >> 12 & 63];
		tok[o++] = alphabet[v >> 6 & 63];
		if (i + 2 < 32)
			tok[o++] = alphabet[v & 63];
	}
	tok[o] = '\0';
	return tok;
}

static void format_rfc3339(int64_t us, char out[32])
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, 32 - n, ".%06ldZ", (long)(us % 1000000));
}

/* Parses a whole string as a decimal integer. */
static bool parse_long(const char *s, long *out)
{
	char *end;
	if (!s || !*s)
		return false;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

/* ---------- jv helpers (every jv argument is borrowed unless said otherwise) ---------- */

/* A new reference to obj[key], or an invalid jv when obj is no object or lacks the key. */
static jv field(jv obj, const char *key)
{
	if (jv_get_kind(obj) != JV_KIND_OBJECT)
		return jv_invalid();
	return jv_object_get(jv_copy(obj), jv_string(key));
}

static jv_kind field_kind(jv obj, const char *key)
{
	jv v = field(obj, key);
	jv_kind k = jv_get_kind(v);
	jv_free(v);
	return k;
}

/* obj[key] when it is a string; the pointer lives as long as obj does. */
static const char *field_str(jv obj, const char *key)
{
	jv v = field(obj, key);
	const char *s = jv_get_kind(v) == JV_KIND_STRING ? jv_string_value(v) : NULL;
	jv_free(v);
	return s;
}

static bool field_num(jv obj, const char *key, double *out)
{
	jv v = field(obj, key);
	bool ok = jv_get_kind(v) == JV_KIND_NUMBER;
	if (ok)
		*out = jv_number_value(v);
	jv_free(v);
	return ok;
}

static bool field_true(jv obj, const char *key)
{
	return field_kind(obj, key) == JV_KIND_TRUE;
}

static jv jv_str_or_null(const char *s)
{
	return s ? jv_string(s) : jv_null();
}

/* Serialises v (consumed) into a malloc'd string. */
static char *dump(jv v, size_t *len)
{
	jv s = jv_dump_string(v, 0);
	*len = (size_t)jv_string_length_bytes(jv_copy(s));
	char *out = xmemdup(jv_string_value(s), *len);
	jv_free(s);
	return out;
}

/* The body as JSON, or an invalid jv when it does not parse. */
static jv parse_json(const char *s, size_t len)
{
	jv v = jv_parse_sized(s, (int)len);
	if (!jv_is_valid(v)) {
		jv_free(v);
		return jv_invalid();
	}
	return v;
}

/* ---------- platform state (all guarded by state_lock) ---------- */

enum endpoint { EP_REGISTER, EP_HEARTBEAT, EP_ACTIVITY, EP_A2A, EP_NOTIFY, EP_OTHER };
static const char *const endpoint_names[] = {
	"register", "heartbeat", "activity", "a2a", "notify", "other"
};

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
 * not atomic), is touched only with state_lock held.
 */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool stopping;

static struct {
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
} platform;

static struct workspace *ws_find(const char *id)
{
	for (size_t i = 0; i < platform.nws; i++)
		if (strcmp(platform.ws[i]->id, id) == 0)
			return platform.ws[i];
	return NULL;
}

static struct workspace *ws_create(const char *id, char *token)
{
	struct workspace *w = xmalloc(sizeof *w);
	*w = (struct workspace){
		.id = xstrdup(id), .token = token,
		.agent_card = jv_null(), .last_heartbeat = jv_null(),
		.last_heartbeat_ms = -1,
	};
	GROW(platform.ws, platform.ws_cap, platform.nws);
	platform.ws[platform.nws++] = w;
	return w;
}

static void row_free(struct row *r)
{
	free(r->json);
	free(r);
}

static void ws_free(struct workspace *w)
{
	for (size_t i = 0; i < w->nrows; i++)
		row_free(w->rows[i]);
	free(w->rows);
	free(w->index);
	free(w->id);
	free(w->token);
	free(w->delivery_mode);
	jv_free(w->agent_card);
	jv_free(w->last_heartbeat);
	free(w);
}

/* Index of the first row created after us (rows are sorted by created_us). */
static size_t rows_upper_bound(const struct workspace *w, int64_t us)
{
	size_t lo = 0, hi = w->nrows;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (w->rows[mid]->created_us <= us)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Index of the row with this id, or -1. Searches from the newest: cursors are usually recent. */
/* The id index, so that a cursor is found without a scan of a long backlog. */
static size_t id_hash(const char *id)
{
	uint64_t h = 1469598103934665603u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		h = (h ^ *p) * 1099511628211u;
	return (size_t)h;
}

static void index_put(struct workspace *w, struct row *r)
{
	size_t i = id_hash(r->id) & (w->index_cap - 1);
	while (w->index[i])
		i = (i + 1) & (w->index_cap - 1);
	w->index[i] = r;
}

/* Rebuilt whole when it would be more than half full and after rows are removed. */
static void index_rebuild(struct workspace *w, size_t need)
{
	size_t cap = 64;
	while (cap < 2 * need)
		cap *= 2;
	free(w->index);
	w->index = xmalloc(cap * sizeof *w->index);
	memset(w->index, 0, cap * sizeof *w->index);
	w->index_cap = cap;
	for (size_t i = 0; i < w->nrows; i++)
		index_put(w, w->rows[i]);
}

static long rows_find(const struct workspace *w, const char *id)
{
	if (!w->index_cap)
		return -1;
	for (size_t i = id_hash(id) & (w->index_cap - 1); w->index[i]; i = (i + 1) & (w->index_cap - 1))
		if (strcmp(w->index[i]->id, id) == 0)
			return (long)rows_upper_bound(w, w->index[i]->created_us) - 1;
	return -1;
}

/*
 * Appends an a2a_receive row to w. created_us < 0 means now (strictly after every
 * row so far); otherwise the row goes to its sorted place, moved on by a microsecond
 * while it would share a timestamp with a row of w. request_body is consumed; an
 * invalid jv means the row has none.
 */
static struct row *row_add(struct workspace *w, const char *source_id, const char *method,
			   jv request_body, int64_t created_us)
{
	struct row *r = xmalloc(sizeof *r);
	char created_at[32];
	size_t pos;

	if (created_us < 0) {
		created_us = wall_us();
		if (created_us <= platform.last_created_us)
			created_us = platform.last_created_us + 1;
	}
	for (;;) {
		pos = rows_upper_bound(w, created_us);
		if (pos == 0 || w->rows[pos - 1]->created_us != created_us)
			break;
		created_us++;
	}
	if (created_us > platform.last_created_us)
		platform.last_created_us = created_us;

	new_uuid(r->id);
	r->created_us = created_us;
	format_rfc3339(created_us, created_at);

	jv o = jv_object();
	o = jv_object_set(o, jv_string("id"), jv_string(r->id));
	o = jv_object_set(o, jv_string("workspace_id"), jv_string(w->id));
	o = jv_object_set(o, jv_string("activity_type"), jv_string("a2a_receive"));
	o = jv_object_set(o, jv_string("source_id"), jv_str_or_null(source_id));
	o = jv_object_set(o, jv_string("target_id"), jv_string(w->id));
	o = jv_object_set(o, jv_string("method"), jv_string(method));
	o = jv_object_set(o, jv_string("summary"), jv_null());
	o = jv_object_set(o, jv_string("duration_ms"), jv_null());
	o = jv_object_set(o, jv_string("status"), jv_string("ok"));
	o = jv_object_set(o, jv_string("error_detail"), jv_null());
	o = jv_object_set(o, jv_string("created_at"), jv_string(created_at));
	if (jv_is_valid(request_body))
		o = jv_object_set(o, jv_string("request_body"), request_body);
	else
		jv_free(request_body);
	r->json = dump(o, &r->json_len);

	GROW(w->rows, w->cap, w->nrows);
	memmove(w->rows + pos + 1, w->rows + pos, (w->nrows - pos) * sizeof *w->rows);
	w->rows[pos] = r;
	w->nrows++;
	if (2 * w->nrows > w->index_cap)
		index_rebuild(w, w->nrows);
	else
		index_put(w, r);
	return r;
}

static void rows_remove(struct workspace *w, size_t from, size_t n)
{
	if (n == 0)
		return;
	for (size_t i = from; i < from + n; i++)
		row_free(w->rows[i]);
	memmove(w->rows + from, w->rows + from + n, (w->nrows - from - n) * sizeof *w->rows);
	w->nrows -= n;
	index_rebuild(w, w->nrows);
}

/* ---------- answers ---------- */

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

static void reply_json(struct reply *rp, unsigned status, jv v)
{
	free(rp->body);
	rp->status = status;
	rp->body = dump(v, &rp->len);
}

static void reply_error(struct reply *rp, unsigned status, const char *message)
{
	reply_json(rp, status, jv_object_set(jv_object(), jv_string("error"), jv_string(message)));
}

static void reply_raw(struct reply *rp, unsigned status, const char *body, size_t len)
{
	free(rp->body);
	rp->status = status;
	rp->body = xmemdup(body, len);
	rp->len = len;
}

static void reply_status(struct reply *rp, const char *status)
{
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("status"), jv_string(status)));
}

/* Answers rows[first..] (step +1 oldest first, -1 newest first) as a JSON array, at most limit. */
static void reply_rows(struct reply *rp, struct row **rows, long first, long end, int step,
		       size_t limit)
{
	struct buf b = { 0 };
	size_t n = 0;

	buf_add(&b, "[", 1);
	for (long i = first; i != end && n < limit; i += step, n++) {
		if (n)
			buf_add(&b, ",", 1);
		buf_add(&b, rows[i]->json, rows[i]->json_len);
	}
	buf_add(&b, "]", 1);
	free(rp->body);
	rp->status = 200;
	rp->body = b.p;
	rp->len = b.len;
}

/* ---------- per-request context ---------- */

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

static const char *header(struct MHD_Connection *c, const char *name)
{
	return MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
}

static const char *query(struct MHD_Connection *c, const char *name)
{
	const char *v = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, name);
	return v && *v ? v : NULL;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
				      const char *value)
{
	jv *obj = cls;
	char *name = xstrdup(key);
	for (char *p = name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	*obj = jv_object_set(*obj, jv_string(name), jv_string(value ? value : ""));
	free(name);
	return MHD_YES;
}

/* ---------- rate limit and injected faults ---------- */

static struct rate_headers rate_limit_take(const char *ip, bool *allowed, long *retry_after)
{
	struct rate_headers rh = {
		.present = platform.rate_limit > 0, .limit = platform.rate_limit,
	};
	struct bucket *b = NULL;
	double now = monotonic_s(), per_sec = platform.rate_limit / 60.0;

	*allowed = true;
	if (!rh.present)
		return rh;
	for (size_t i = 0; i < platform.nbuckets && !b; i++)
		if (strcmp(platform.buckets[i].ip, ip) == 0)
			b = &platform.buckets[i];
	if (!b) {
		GROW(platform.buckets, platform.buckets_cap, platform.nbuckets);
		b = &platform.buckets[platform.nbuckets++];
		snprintf(b->ip, sizeof b->ip, "%s", ip);
		b->tokens = platform.rate_limit;
		b->updated = now;
	}
	b->tokens = fmin((double)platform.rate_limit, b->tokens + (now - b->updated) * per_sec);
	b->updated = now;
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
	} else {
		*allowed = false;
		*retry_after = (long)fmax(1.0, ceil((1.0 - b->tokens) / per_sec));
	}
	rh.remaining = (long)floor(b->tokens);
	rh.reset = (long)ceil((platform.rate_limit - b->tokens) / per_sec);
	return rh;
}

static void reply_too_many(struct reply *rp, long retry_after)
{
	jv o = jv_object_set(jv_object(), jv_string("error"), jv_string("rate limit exceeded"));
	o = jv_object_set(o, jv_string("retry_after"), jv_number((double)retry_after));
	reply_json(rp, 429, o);
	rp->retry_after = retry_after;
}

/*
 * Applies the active faults to a request of endpoint ep, in the order they were
 * added. Delays add up; the first fault that hits with an answer decides it.
 * Returns true when a fault decided the answer.
 */
static bool faults_apply(enum endpoint ep, struct reply *rp, unsigned *delay_ms)
{
	bool decided = false;

	for (size_t i = 0; i < platform.nfaults; i++) {
		struct fault *f = &platform.faults[i];
		if (!f->any_endpoint && f->endpoint != ep)
			continue;
		if (decided && f->action != FAULT_DELAY)
			continue;
		if (f->action == FAULT_EVERY_429) {
			if (++f->seen % f->every != 0)
				continue;
		} else if (f->ratio < 1.0 && random_unit() >= f->ratio) {
			continue;
		}
		*delay_ms += f->delay_ms;
		if (f->dribble_ms > rp->dribble_ms)
			rp->dribble_ms = f->dribble_ms;
		switch (f->action) {
		case FAULT_DELAY:
			break;
		case FAULT_FAIL:
		case FAULT_RAW:
			reply_raw(rp, f->status, f->body, f->body_len);
			rp->retry_after = f->retry_after;
			decided = true;
			break;
		case FAULT_GENERATED:
			free(rp->body);
			rp->body = NULL;
			rp->len = 0;
			rp->status = f->status;
			rp->generated = f->body_bytes;
			rp->chunked = f->chunked;
			decided = true;
			break;
		case FAULT_REDIRECT:
			reply_raw(rp, f->status, f->body ? f->body : "", f->body_len);
			free(rp->location);
			rp->location = xstrdup(f->location);
			rp->bare = f->body == NULL;
			decided = true;
			break;
		case FAULT_RESET:
			rp->reset = true;
			decided = true;
			break;
		case FAULT_EVERY_429:
			reply_too_many(rp, f->retry_after >= 0 ? f->retry_after : 1);
			decided = true;
			break;
		}
		if (f->remaining > 0 && --f->remaining == 0) {
			free(f->body);
			free(f->location);
			memmove(f, f + 1, (platform.nfaults - i - 1) * sizeof *f);
			platform.nfaults--;
			i--;
		}
	}
	return decided;
}

/*
 * ---------- the platform API (CONTRACT.md) ----------
 * A request meets, in order: the rate limit, the injected faults, the org guard, the
 * 1 MiB body cap, then its endpoint (auth, validation, effect).
 */

/* The workspace id in /workspaces/<id>/<suffix>, copied into id; false if url has another shape. */
static bool workspace_path(const char *url, const char *suffix, char *id, size_t idsize)
{
	static const char prefix[] = "/workspaces/";
	if (strncmp(url, prefix, sizeof prefix - 1) != 0)
		return false;
	const char *start = url + sizeof prefix - 1, *slash = strchr(start, '/');
	if (!slash || slash == start || strcmp(slash + 1, suffix) != 0 ||
	    (size_t)(slash - start) >= idsize)
		return false;
	memcpy(id, start, (size_t)(slash - start));
	id[slash - start] = '\0';
	return true;
}

static enum endpoint classify(const char *method, const char *url, char *id, size_t idsize)
{
	bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;

	*id = '\0';
	if (post && strcmp(url, "/registry/register") == 0)
		return EP_REGISTER;
	if (post && strcmp(url, "/registry/heartbeat") == 0)
		return EP_HEARTBEAT;
	if (get && workspace_path(url, "activity", id, idsize))
		return EP_ACTIVITY;
	if (post && workspace_path(url, "a2a", id, idsize))
		return EP_A2A;
	if (post && workspace_path(url, "notify", id, idsize))
		return EP_NOTIFY;
	return EP_OTHER;
}

/* Checks the bearer token against w's; answers 401 and returns false when it does not match. */
static bool authorised(struct MHD_Connection *c, const struct workspace *w, struct reply *rp)
{
	const char *auth = header(c, "Authorization");
	if (!auth || strncmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0') {
		reply_error(rp, 401, "missing workspace auth token");
		return false;
	}
	if (!w || !w->token || strcmp(auth + 7, w->token) != 0) {
		reply_error(rp, 401, "invalid workspace auth token");
		return false;
	}
	return true;
}

static void api_register(struct MHD_Connection *c, jv body, struct reply *rp)
{
	const char *id = field_str(body, "id");
	jv_kind mode_kind = field_kind(body, "delivery_mode");

	if (!id || !*id || field_kind(body, "agent_card") != JV_KIND_OBJECT ||
	    (mode_kind != JV_KIND_INVALID && mode_kind != JV_KIND_NULL &&
	     mode_kind != JV_KIND_STRING)) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	struct workspace *w = ws_find(id);
	bool first = !w || !w->token;
	if (!first && !authorised(c, w, rp))
		return;
	if (!w)
		w = ws_create(id, NULL);
	if (first)
		w->token = new_token();
	jv_free(w->agent_card);
	w->agent_card = field(body, "agent_card");
	if (mode_kind == JV_KIND_STRING) {
		free(w->delivery_mode);
		w->delivery_mode = xstrdup(field_str(body, "delivery_mode"));
	}
	w->registered = true;

	jv o = jv_object_set(jv_object(), jv_string("status"), jv_string("registered"));
	if (first)
		o = jv_object_set(o, jv_string("auth_token"), jv_string(w->token));
	reply_json(rp, 200, o);
}

static bool is_integer(double d)
{
	return d == floor(d) && fabs(d) < 9.2e18;
}

static bool heartbeat_valid(jv body)
{
	static const char *const integers[] = { "uptime_seconds", "active_tasks" };
	static const char *const strings[] = { "sample_error", "current_task", "runtime_state" };
	double d;

	for (size_t i = 0; i < sizeof integers / sizeof *integers; i++)
		if (field_kind(body, integers[i]) != JV_KIND_INVALID &&
		    !(field_num(body, integers[i], &d) && is_integer(d)))
			return false;
	if (field_kind(body, "error_rate") != JV_KIND_INVALID &&
	    !(field_num(body, "error_rate", &d) && d >= 0.0 && d <= 1.0))
		return false;
	for (size_t i = 0; i < sizeof strings / sizeof *strings; i++) {
		jv_kind k = field_kind(body, strings[i]);
		if (k != JV_KIND_INVALID && k != JV_KIND_STRING)
			return false;
	}
	return true;
}

static void api_heartbeat(struct MHD_Connection *c, jv body, int64_t t_ms, struct reply *rp)
{
	const char *id = field_str(body, "workspace_id");
	if (!id || !*id) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	struct workspace *w = ws_find(id);
	if (!authorised(c, w, rp))
		return;
	if (!heartbeat_valid(body)) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	jv_free(w->last_heartbeat);
	w->last_heartbeat = jv_copy(body);
	w->last_heartbeat_ms = t_ms;
	reply_status(rp, "ok");
}

static void api_activity(struct MHD_Connection *c, const char *id, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	const char *type = query(c, "type"), *since_id = query(c, "since_id");
	const char *since_secs = query(c, "since_secs");
	long limit;

	if (!authorised(c, w, rp))
		return;
	if (!parse_long(query(c, "limit"), &limit) || limit <= 0)
		limit = LIMIT_DEFAULT;
	if (limit > LIMIT_MAX)
		limit = LIMIT_MAX;
	/* Every row this platform stores is an a2a_receive row. */
	bool none = type && strcmp(type, "a2a_receive") != 0;

	if (since_id) {
		long at = rows_find(w, since_id);
		if (at < 0) {
			reply_error(rp, 410, "cursor not found");
			return;
		}
		size_t first = rows_upper_bound(w, w->rows[at]->created_us);
		reply_rows(rp, w->rows, (long)first, none ? (long)first : (long)w->nrows, 1,
			   (size_t)limit);
		return;
	}
	int64_t cutoff = INT64_MIN;
	if (since_secs) {
		long secs;
		if (!parse_long(since_secs, &secs) || secs < 0) {
			reply_error(rp, 400, "invalid since_secs");
			return;
		}
		if (secs > SINCE_SECS_MAX)
			secs = SINCE_SECS_MAX;
		cutoff = wall_us() - (int64_t)secs * 1000000;
	}
	long end = (long)w->nrows - 1;
	while (end >= 0 && w->rows[end]->created_us >= cutoff)
		end--;
	reply_rows(rp, w->rows, (long)w->nrows - 1, none ? (long)w->nrows - 1 : end, -1,
		   (size_t)limit);
}

static void api_a2a(struct MHD_Connection *c, const char *peer_id, jv body, struct reply *rp)
{
	const char *auth = header(c, "Authorization");
	const char *caller_id = header(c, "X-Workspace-ID");

	if (!auth || strncmp(auth, "Bearer ", 7) != 0 || auth[7] == '\0') {
		reply_error(rp, 401, "missing workspace auth token");
		return;
	}
	if (!caller_id || !*caller_id) {
		reply_error(rp, 400, "missing X-Workspace-ID");
		return;
	}
	if (!authorised(c, ws_find(caller_id), rp))
		return;
	if (jv_get_kind(body) != JV_KIND_OBJECT) {
		reply_error(rp, 400, "invalid JSON");
		return;
	}
	struct workspace *peer = ws_find(peer_id);
	if (!peer) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	const char *method = field_str(body, "method");
	row_add(peer, caller_id, method ? method : "message/send", jv_copy(body), -1);

	jv o = jv_object_set(jv_object(), jv_string("status"), jv_string("queued"));
	o = jv_object_set(o, jv_string("delivery_mode"), jv_string("poll"));
	o = jv_object_set(o, jv_string("method"), jv_string("message/send"));
	reply_json(rp, 200, o);
}

static void api_notify(struct MHD_Connection *c, const char *id, jv body, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	if (!authorised(c, w, rp))
		return;
	const char *message = field_str(body, "message");
	if (!message || !*message) {
		reply_error(rp, 400, "message is required");
		return;
	}
	jv echo = jv_object_set(jv_object(), jv_string("message"), jv_string(message));
	row_add(w, NULL, "notify", echo, -1);
	reply_status(rp, "sent");
}

static void api_dispatch(struct MHD_Connection *c, const struct request *rq, enum endpoint ep,
			 const char *id, jv body, struct reply *rp)
{
	if (platform.org_id && ep != EP_REGISTER && ep != EP_HEARTBEAT) {
		const char *org = header(c, "X-Molecule-Org-Id");
		if (!org || strcmp(org, platform.org_id) != 0) {
			rp->status = 404;
			rp->bare = true;
			return;
		}
	}
	if (ep != EP_ACTIVITY && ep != EP_OTHER && rq->body_too_big) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	switch (ep) {
	case EP_REGISTER:
		api_register(c, body, rp);
		break;
	case EP_HEARTBEAT:
		api_heartbeat(c, body, rq->t_ms, rp);
		break;
	case EP_ACTIVITY:
		api_activity(c, id, rp);
		break;
	case EP_A2A:
		api_a2a(c, id, body, rp);
		break;
	case EP_NOTIFY:
		api_notify(c, id, body, rp);
		break;
	case EP_OTHER:
		reply_error(rp, 404, "not found");
		break;
	}
}

/* The workspace a recorded post is about: the caller for a2a. */
static const char *post_workspace(struct MHD_Connection *c, enum endpoint ep, const char *id,
				  jv body)
{
	switch (ep) {
	case EP_REGISTER:
		return field_str(body, "id");
	case EP_HEARTBEAT:
		return field_str(body, "workspace_id");
	case EP_A2A:
		return header(c, "X-Workspace-ID");
	case EP_NOTIFY:
		return id;
	default:
		return NULL;
	}
}

static void post_free(struct post *p)
{
	free(p->path);
	free(p->workspace_id);
	jv_free(p->headers);
	jv_free(p->body);
}

static void record_post(struct MHD_Connection *c, const struct request *rq, enum endpoint ep,
			const char *id, jv body, unsigned status)
{
	const char *ws = post_workspace(c, ep, id, body);
	struct post *p;

	/* Bounded, so that a long benchmark cannot eat the machine's memory. */
	if (platform.nposts >= POSTS_KEPT) {
		size_t drop = platform.nposts / 4;
		for (size_t i = 0; i < drop; i++)
			post_free(&platform.posts[i]);
		memmove(platform.posts, platform.posts + drop,
			(platform.nposts - drop) * sizeof *platform.posts);
		platform.nposts -= drop;
	}
	GROW(platform.posts, platform.posts_cap, platform.nposts);
	p = &platform.posts[platform.nposts++];
	*p = (struct post){
		.seq = rq->seq, .kind = ep, .path = xstrdup(rq->uri), .t_ms = rq->t_ms,
		.status = status, .workspace_id = ws ? xstrdup(ws) : NULL,
		.headers = jv_object(),
		.body = jv_is_valid(body) ? jv_copy(body)
					  : jv_string_sized(rq->body ? rq->body : "",
							    (int)rq->body_len),
	};
	MHD_get_connection_values(c, MHD_HEADER_KIND, collect_header, &p->headers);
}

/* Fills in the status of a request logged on arrival, unless the log was cleared since. */
static void record_status(const struct request *rq, unsigned status)
{
	size_t lo = 0, hi = platform.nrequests;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (platform.requests[mid].seq < rq->seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < platform.nrequests && platform.requests[lo].seq == rq->seq)
		platform.requests[lo].status = status;
}

static void sleep_ms(unsigned ms)
{
	/* In slices, so that a shutdown does not wait for a long injected delay. */
	while (ms > 0 && !atomic_load(&stopping)) {
		unsigned slice = ms < 10 ? ms : 10;
		struct timespec ts = { 0, (long)slice * 1000000L };
		nanosleep(&ts, NULL);
		ms -= slice;
	}
}

static void api_handle(struct MHD_Connection *c, const char *method, const char *url,
		       struct request *rq, struct reply *rp, struct rate_headers *rh)
{
	char id[256];
	enum endpoint ep = classify(method, url, id, sizeof id);
	bool allowed, decided;
	long retry_after = 0;
	unsigned delay_ms = 0;

	pthread_mutex_lock(&state_lock);
	*rh = rate_limit_take(rq->conn->ip, &allowed, &retry_after);
	if (!allowed) {
		reply_too_many(rp, retry_after);
		decided = true;
	} else {
		decided = faults_apply(ep, rp, &delay_ms);
	}
	pthread_mutex_unlock(&state_lock);

	if (delay_ms)
		sleep_ms(delay_ms);

	pthread_mutex_lock(&state_lock);
	jv body = ep == EP_ACTIVITY || ep == EP_OTHER || !rq->body
		? jv_invalid() : parse_json(rq->body, rq->body_len);
	if (!decided)
		api_dispatch(c, rq, ep, id, body, rp);
	unsigned status = rp->reset ? 0 : rp->status;
	if (ep != EP_ACTIVITY && ep != EP_OTHER)
		record_post(c, rq, ep, id, body, status);
	record_status(rq, status);
	if (platform.log)
		fprintf(platform.log, "%lld %s %s %u\n", (long long)rq->t_ms, method, rq->uri, status);
	jv_free(body);
	pthread_mutex_unlock(&state_lock);
}

/* ---------- the control API ---------- */

static void ctl_new_workspace(jv body, struct reply *rp)
{
	const char *id = field_str(body, "id"), *token = field_str(body, "token");
	char fresh[UUID_LEN + 1];

	if ((field_kind(body, "id") != JV_KIND_INVALID && (!id || !*id)) ||
	    (field_kind(body, "token") != JV_KIND_INVALID && (!token || !*token))) {
		reply_error(rp, 400, "id and token must be non-empty strings");
		return;
	}
	if (!id) {
		new_uuid(fresh);
		id = fresh;
	}
	struct workspace *w = ws_find(id);
	if (!w)
		w = ws_create(id, NULL);
	if (token || field_true(body, "no_token") || !w->token) {
		free(w->token);
		w->token = token ? xstrdup(token)
				 : field_true(body, "no_token") ? NULL : new_token();
	}
	jv o = jv_object_set(jv_object(), jv_string("id"), jv_string(w->id));
	o = jv_object_set(o, jv_string("token"), jv_str_or_null(w->token));
	reply_json(rp, 200, o);
}

static void ctl_show_workspace(const char *id, struct reply *rp)
{
	struct workspace *w = ws_find(id);
	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	jv o = jv_object_set(jv_object(), jv_string("id"), jv_string(w->id));
	o = jv_object_set(o, jv_string("token"), jv_str_or_null(w->token));
	o = jv_object_set(o, jv_string("delivery_mode"), jv_str_or_null(w->delivery_mode));
	o = jv_object_set(o, jv_string("registered"), jv_bool(w->registered));
	o = jv_object_set(o, jv_string("agent_card"), jv_copy(w->agent_card));
	o = jv_object_set(o, jv_string("last_heartbeat_ms"),
			  w->last_heartbeat_ms < 0 ? jv_null()
						   : jv_number((double)w->last_heartbeat_ms));
	o = jv_object_set(o, jv_string("last_heartbeat"), jv_copy(w->last_heartbeat));
	o = jv_object_set(o, jv_string("rows"), jv_number((double)w->nrows));
	reply_json(rp, 200, o);
}

/* text with every "{n}" replaced by n. */
static char *expand_text(const char *text, long n)
{
	struct buf b = { 0 };
	char num[24];
	int numlen = snprintf(num, sizeof num, "%ld", n);

	buf_add(&b, "", 0);
	for (const char *p = text; *p;) {
		const char *hit = strstr(p, "{n}");
		if (!hit) {
			buf_add(&b, p, strlen(p));
			break;
		}
		buf_add(&b, p, (size_t)(hit - p));
		buf_add(&b, num, (size_t)numlen);
		p = hit + 3;
	}
	return b.p;
}

/* The JSON-RPC envelope of one queued message, built as the platform stores it. */
static jv message_envelope(jv spec, const char *method, const char *text, bool canvas)
{
	const char *key = field_str(spec, "key");
	const char *context_id = field_str(spec, "context_id"), *task_id = field_str(spec, "task_id");
	char rpc_id[UUID_LEN + 1], message_id[UUID_LEN + 1];
	jv parts;

	if (!key)
		key = "kind";
	if (field_kind(spec, "parts") == JV_KIND_ARRAY) {
		parts = field(spec, "parts");
	} else {
		jv part = jv_object_set(jv_object(), jv_string(key), jv_string("text"));
		part = jv_object_set(part, jv_string("text"), jv_string(text));
		parts = jv_array_append(jv_array(), part);
	}
	new_uuid(rpc_id);
	new_uuid(message_id);

	jv message = jv_object_set(jv_object(), jv_string("role"), jv_string("user"));
	message = jv_object_set(message, jv_string("messageId"), jv_string(message_id));
	if (context_id)
		message = jv_object_set(message, jv_string("contextId"), jv_string(context_id));
	if (task_id)
		message = jv_object_set(message, jv_string("taskId"), jv_string(task_id));
	message = jv_object_set(message, jv_string("parts"), parts);

	jv params = jv_object_set(jv_object(), jv_string("message"), message);
	if (canvas)
		params = jv_object_set(params, jv_string("metadata"),
				       jv_object_set(jv_object(), jv_string("history"), jv_array()));

	jv env = jv_object_set(jv_object(), jv_string("jsonrpc"), jv_string("2.0"));
	env = jv_object_set(env, jv_string("id"), jv_string(rpc_id));
	env = jv_object_set(env, jv_string("method"), jv_string(method));
	return jv_object_set(env, jv_string("params"), params);
}

static void ctl_messages(jv spec, struct reply *rp)
{
	const char *target = field_str(spec, "workspace_id"), *from = field_str(spec, "from");
	const char *text = field_str(spec, "text"), *method = field_str(spec, "method");
	jv_kind from_kind = field_kind(spec, "from");
	double count = 1, age = -1;

	if (!target) {
		reply_error(rp, 400, "workspace_id is required");
		return;
	}
	if ((field_kind(spec, "count") != JV_KIND_INVALID &&
	     !(field_num(spec, "count", &count) && is_integer(count) && count >= 0 &&
	       count <= MESSAGES_MAX)) ||
	    (field_kind(spec, "age_secs") != JV_KIND_INVALID &&
	     !(field_num(spec, "age_secs", &age) && age >= 0 && age < 1e9)) ||
	    (from_kind != JV_KIND_INVALID && from_kind != JV_KIND_NULL && !from)) {
		reply_error(rp, 400, "count, age_secs or from is invalid");
		return;
	}
	struct workspace *w = ws_find(target);
	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	if (from && !ws_find(from))
		ws_create(from, new_token());
	if (!text)
		text = "hello";
	if (!method)
		method = "message/send";

	int64_t base_us = age >= 0 ? wall_us() - (int64_t)llround(age * 1e6) : -1;
	jv ids = jv_array();
	for (long i = 1; i <= (long)count; i++) {
		jv request_body;
		if (field_true(spec, "no_body")) {
			request_body = jv_invalid();
		} else if (field_kind(spec, "request_body") != JV_KIND_INVALID) {
			request_body = field(spec, "request_body");
		} else {
			char *expanded = expand_text(text, i);
			request_body = message_envelope(spec, method, expanded, !from);
			free(expanded);
		}
		struct row *r = row_add(w, from, method, request_body,
					base_us < 0 ? -1 : base_us + i - 1);
		ids = jv_array_append(ids, jv_string(r->id));
	}
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("ids"), ids));
}

static bool kind_from_name(const char *name, enum endpoint *ep)
{
	for (int e = EP_REGISTER; e < EP_OTHER; e++)
		if (strcmp(name, endpoint_names[e]) == 0) {
			*ep = (enum endpoint)e;
			return true;
		}
	return false;
}

static void ctl_posts(struct MHD_Connection *c, struct reply *rp)
{
	const char *kind = query(c, "kind"), *ws = query(c, "workspace_id");
	enum endpoint want = EP_OTHER;

	if (kind && (!kind_from_name(kind, &want) || want == EP_ACTIVITY)) {
		reply_error(rp, 400, "kind must be register, heartbeat, a2a or notify");
		return;
	}
	jv out = jv_array();
	for (size_t i = 0; i < platform.nposts; i++) {
		const struct post *p = &platform.posts[i];
		if ((kind && p->kind != want) ||
		    (ws && (!p->workspace_id || strcmp(ws, p->workspace_id) != 0)))
			continue;
		jv o = jv_object_set(jv_object(), jv_string("seq"), jv_number((double)p->seq));
		o = jv_object_set(o, jv_string("kind"), jv_string(endpoint_names[p->kind]));
		o = jv_object_set(o, jv_string("path"), jv_string(p->path));
		o = jv_object_set(o, jv_string("t_ms"), jv_number((double)p->t_ms));
		o = jv_object_set(o, jv_string("status"), jv_number(p->status));
		o = jv_object_set(o, jv_string("headers"), jv_copy(p->headers));
		o = jv_object_set(o, jv_string("body"), jv_copy(p->body));
		out = jv_array_append(out, o);
	}
	reply_json(rp, 200, out);
}

static void posts_clear(void)
{
	for (size_t i = 0; i < platform.nposts; i++)
		post_free(&platform.posts[i]);
	platform.nposts = 0;
}

static void ctl_requests(struct reply *rp)
{
	jv out = jv_array();
	for (size_t i = 0; i < platform.nrequests; i++) {
		const struct logged_request *r = &platform.requests[i];
		jv o = jv_object_set(jv_object(), jv_string("seq"), jv_number((double)r->seq));
		o = jv_object_set(o, jv_string("method"), jv_string(r->method));
		o = jv_object_set(o, jv_string("path"), jv_string(r->path));
		o = jv_object_set(o, jv_string("status"), jv_number(r->status));
		o = jv_object_set(o, jv_string("t_ms"), jv_number((double)r->t_ms));
		out = jv_array_append(out, o);
	}
	reply_json(rp, 200, out);
}

static void requests_clear(void)
{
	for (size_t i = 0; i < platform.nrequests; i++)
		free(platform.requests[i].path);
	platform.nrequests = 0;
}

static void ctl_activity(struct MHD_Connection *c, struct reply *rp)
{
	const char *id = query(c, "workspace_id");
	struct workspace *w = id ? ws_find(id) : NULL;
	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	reply_rows(rp, w->rows, 0, (long)w->nrows, 1, w->nrows);
}

static void ctl_prune(jv spec, struct reply *rp)
{
	const char *id = field_str(spec, "workspace_id"), *before = field_str(spec, "before_id");
	struct workspace *w = id ? ws_find(id) : NULL;
	size_t pruned = 0;

	if (!w) {
		reply_error(rp, 404, "workspace not found");
		return;
	}
	if (field_true(spec, "all")) {
		pruned = w->nrows;
		rows_remove(w, 0, w->nrows);
	}
	if (before) {
		long at = rows_find(w, before);
		if (at < 0) {
			reply_error(rp, 404, "row not found");
			return;
		}
		pruned += (size_t)at + 1;
		rows_remove(w, 0, (size_t)at + 1);
	}
	jv ids = field(spec, "ids");
	if (jv_get_kind(ids) == JV_KIND_ARRAY) {
		jv_array_foreach(ids, i, row_id) {
			long at = jv_get_kind(row_id) == JV_KIND_STRING
				? rows_find(w, jv_string_value(row_id)) : -1;
			if (at >= 0) {
				rows_remove(w, (size_t)at, 1);
				pruned++;
			}
			jv_free(row_id);
		}
	}
	jv_free(ids);
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("pruned"),
					  jv_number((double)pruned)));
}

/* Reads an optional number field in 0..max; false when it is present but not such a number. */
static bool optional_number(jv spec, const char *key, double max, double *out)
{
	if (field_kind(spec, key) == JV_KIND_INVALID)
		return true;
	return field_num(spec, key, out) && *out >= 0 && *out <= max;
}

/* The same for a whole number. */
static bool optional_count(jv spec, const char *key, double max, double *out)
{
	return optional_number(spec, key, max, out) &&
	       (field_kind(spec, key) == JV_KIND_INVALID || is_integer(*out));
}

/* Decodes standard base64 (padding optional, no whitespace) into a malloc'd buffer. */
static bool base64_decode(const char *in, char **out, size_t *outlen)
{
	size_t n = strlen(in), o = 0;
	uint32_t acc = 0;
	int bits = 0;
	char *p = xmalloc(n / 4 * 3 + 3);

	while (n > 0 && in[n - 1] == '=')
		n--;
	for (size_t i = 0; i < n; i++) {
		const char c = in[i];
		int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26
			: c >= '0' && c <= '9' ? c - '0' + 52 : c == '+' ? 62 : c == '/' ? 63 : -1;
		if (v < 0) {
			free(p);
			return false;
		}
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			p[o++] = (char)(acc >> bits & 0xff);
		}
	}
	*out = p;
	*outlen = o;
	return true;
}

/*
 * POST /_control/faults: adds a fault, applied to the platform requests of one endpoint
 * ("register", "heartbeat", "activity", "a2a", "notify", or "*" for all) in the order
 * faults were added; the first that answers decides, delays add up. Fields:
 *   status N        the answer's status (503 by default; 200 for raw answers, 302 for
 *                   redirects)
 *   body X          the answer's body: a string verbatim, anything else as JSON
 *                   ({"error":"injected"} by default)
 *   retry_after N   adds Retry-After: N
 *   fail_next N     hits the next N matching requests only; fail_ratio R hits each one
 *                   with chance R (default: every one, for ever)
 *   reset_next N / reset_ratio R
 *                   closes the connection without an answer
 *   delay_ms N      holds the answer that long (alone: the real answer, delayed)
 *   every_429 N     answers every Nth matching request with 429
 *   next N          how many requests a fault hits, for the kinds without a count
 *   raw S           answers exactly the text S
 *   raw_base64 S    answers exactly the bytes S decodes to (invalid UTF-8, NUL bytes)
 *   body_bytes N    answers N bytes of a JSON array holding one long string, made up
 *                   while it is sent (never held in memory); "chunked": true leaves out
 *                   Content-Length
 *   dribble_ms N    sends the answer's body (whichever it is) one byte every N ms
 *   redirect URL    answers a redirect (status 302 unless given) with Location: URL and
 *                   no body unless given
 * raw, raw_base64, body_bytes and redirect exclude each other.
 */
static void ctl_add_fault(jv spec, struct reply *rp)
{
	const char *name = field_str(spec, "endpoint"), *raw = field_str(spec, "raw");
	const char *raw_base64 = field_str(spec, "raw_base64");
	const char *redirect = field_str(spec, "redirect");
	struct fault f = { .retry_after = -1, .remaining = -1, .ratio = 1.0, .status = 503 };
	double status = 503, retry_after = -1, fail_next = 0, fail_ratio = -1, reset_next = 0;
	double reset_ratio = -1, delay_ms = 0, every = 0, next = 0, dribble_ms = 0;
	double body_bytes = 0;
	bool has_body = field_kind(spec, "body") != JV_KIND_INVALID;
	bool has_status = field_kind(spec, "status") != JV_KIND_INVALID;
	jv_kind chunked = field_kind(spec, "chunked");
	char *decoded = NULL;
	size_t decoded_len = 0;
	int answers = (raw != NULL) + (raw_base64 != NULL) + (redirect != NULL) +
		      (field_kind(spec, "body_bytes") != JV_KIND_INVALID);

	if (!name || !(strcmp(name, "*") == 0 || kind_from_name(name, &f.endpoint)) ||
	    !optional_count(spec, "status", 599, &status) ||
	    !optional_count(spec, "retry_after", 1e6, &retry_after) ||
	    !optional_count(spec, "fail_next", 1e9, &fail_next) ||
	    !optional_number(spec, "fail_ratio", 1, &fail_ratio) ||
	    !optional_count(spec, "reset_next", 1e9, &reset_next) ||
	    !optional_number(spec, "reset_ratio", 1, &reset_ratio) ||
	    !optional_count(spec, "delay_ms", 36e5, &delay_ms) ||
	    !optional_count(spec, "dribble_ms", 6e4, &dribble_ms) ||
	    !optional_count(spec, "body_bytes", 1e12, &body_bytes) ||
	    !optional_count(spec, "every_429", 1e9, &every) ||
	    !optional_count(spec, "next", 1e9, &next) || status < 100 ||
	    (field_kind(spec, "raw") != JV_KIND_INVALID && !raw) ||
	    (field_kind(spec, "raw_base64") != JV_KIND_INVALID &&
	     (!raw_base64 || !base64_decode(raw_base64, &decoded, &decoded_len))) ||
	    (field_kind(spec, "redirect") != JV_KIND_INVALID && (!redirect || !*redirect)) ||
	    (field_kind(spec, "body_bytes") != JV_KIND_INVALID && body_bytes < 4) ||
	    (chunked != JV_KIND_INVALID && chunked != JV_KIND_TRUE && chunked != JV_KIND_FALSE) ||
	    answers > 1) {
		free(decoded);
		reply_error(rp, 400, "invalid fault");
		return;
	}
	/* "fail_next": 0 and the like hit no request at all. */
	static const char *const counts[] = { "fail_next", "reset_next", "next" };
	for (size_t i = 0; i < sizeof counts / sizeof *counts; i++) {
		double n;
		if (field_num(spec, counts[i], &n) && n == 0) {
			free(decoded);
			reply_json(rp, 200, jv_object_set(jv_object(), jv_string("ok"), jv_true()));
			return;
		}
	}
	f.any_endpoint = strcmp(name, "*") == 0;
	f.status = (unsigned)status;
	f.retry_after = (long)retry_after;
	f.delay_ms = (unsigned)delay_ms;
	f.dribble_ms = (unsigned)dribble_ms;

	bool reset = reset_next > 0 || reset_ratio >= 0;
	if (reset) {
		f.action = FAULT_RESET;
	} else if (raw || raw_base64) {
		f.action = FAULT_RAW;
		if (!has_status)
			f.status = 200;
		if (raw) {
			f.body = xstrdup(raw);
			f.body_len = strlen(raw);
		} else {
			f.body = decoded;
			f.body_len = decoded_len;
			decoded = NULL;
		}
	} else if (body_bytes > 0) {
		f.action = FAULT_GENERATED;
		if (!has_status)
			f.status = 200;
		f.body_bytes = (uint64_t)body_bytes;
		f.chunked = chunked == JV_KIND_TRUE;
	} else if (redirect) {
		f.action = FAULT_REDIRECT;
		if (!has_status)
			f.status = 302;
		f.location = xstrdup(redirect);
		if (field_kind(spec, "body") == JV_KIND_STRING) {
			f.body = xstrdup(field_str(spec, "body"));
			f.body_len = strlen(f.body);
		} else if (has_body) {
			f.body = dump(field(spec, "body"), &f.body_len);
		}
	} else if (every > 0) {
		f.action = FAULT_EVERY_429;
		f.every = (unsigned long)every;
	} else if (fail_next > 0 || fail_ratio >= 0 || has_body || retry_after >= 0 || has_status) {
		f.action = FAULT_FAIL;
		if (field_kind(spec, "body") == JV_KIND_STRING) {
			f.body = xstrdup(field_str(spec, "body"));
			f.body_len = strlen(f.body);
		} else {
			jv answer = has_body ? field(spec, "body")
				: jv_object_set(jv_object(), jv_string("error"), jv_string("injected"));
			f.body = dump(answer, &f.body_len);
		}
	} else {
		f.action = FAULT_DELAY;
	}
	free(decoded);
	/* How many matching requests it hits, and how likely each one is hit. */
	double count = next > 0 ? next : reset ? reset_next : fail_next;
	double ratio = reset ? reset_ratio : fail_ratio;
	f.remaining = count > 0 ? (long)count : -1;
	f.ratio = ratio >= 0 ? ratio : 1.0;

	GROW(platform.faults, platform.faults_cap, platform.nfaults);
	platform.faults[platform.nfaults++] = f;
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("ok"), jv_true()));
}

static void faults_clear(void)
{
	for (size_t i = 0; i < platform.nfaults; i++) {
		free(platform.faults[i].body);
		free(platform.faults[i].location);
	}
	platform.nfaults = 0;
}

static void reply_ok(struct reply *rp)
{
	reply_json(rp, 200, jv_object_set(jv_object(), jv_string("ok"), jv_true()));
}

static void control_handle(struct MHD_Connection *c, const char *method, const char *url,
			   struct request *rq, struct reply *rp)
{
	const char *what = url + strlen("/_control");
	bool post = strcmp(method, "POST") == 0, get = strcmp(method, "GET") == 0;
	bool del = strcmp(method, "DELETE") == 0;

	if (post && rq->body_too_big) {
		reply_error(rp, 400, "invalid request body");
		return;
	}
	jv body = post ? parse_json(rq->body ? rq->body : "{}", rq->body ? rq->body_len : 2)
		       : jv_null();
	if (post && jv_get_kind(body) != JV_KIND_OBJECT) {
		reply_error(rp, 400, "body must be a JSON object");
	} else if (post && strcmp(what, "/workspaces") == 0) {
		ctl_new_workspace(body, rp);
	} else if (get && strncmp(what, "/workspaces/", 12) == 0) {
		ctl_show_workspace(what + 12, rp);
	} else if (post && strcmp(what, "/messages") == 0) {
		ctl_messages(body, rp);
	} else if (get && strcmp(what, "/posts") == 0) {
		ctl_posts(c, rp);
	} else if (del && strcmp(what, "/posts") == 0) {
		posts_clear();
		reply_ok(rp);
	} else if (get && strcmp(what, "/requests") == 0) {
		ctl_requests(rp);
	} else if (del && strcmp(what, "/requests") == 0) {
		requests_clear();
		reply_ok(rp);
	} else if (get && strcmp(what, "/activity") == 0) {
		ctl_activity(c, rp);
	} else if (post && strcmp(what, "/prune") == 0) {
		ctl_prune(body, rp);
	} else if (post && strcmp(what, "/faults") == 0) {
		ctl_add_fault(body, rp);
	} else if (del && strcmp(what, "/faults") == 0) {
		faults_clear();
		reply_ok(rp);
	} else if (post && strcmp(what, "/shutdown") == 0) {
		rp->shutdown = true;
		reply_ok(rp);
	} else {
		reply_error(rp, 404, "not found");
	}
	jv_free(body);
}

/* ---------- libmicrohttpd glue ---------- */

/*
 * A body sent through a callback: a made-up one (never allocated whole, so an answer
 * can be far larger than the fake's memory), or one dribbled out a byte at a time.
 * Each connection has its own thread, so sleeping here stalls only this answer.
 */
struct stream {
	char *body;                     /* NULL: made up, see stream_byte */
	uint64_t len;
	unsigned dribble_ms;
};

/* Byte pos of a made-up body of len bytes: ["aaa...a"], a JSON array of one string. */
static char stream_byte(uint64_t pos, uint64_t len)
{
	return pos == 0 ? '[' : pos == 1 || pos == len - 2 ? '"' : pos == len - 1 ? ']' : 'a';
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max)
{
	struct stream *st = cls;

	if (pos >= st->len)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (st->dribble_ms) {
		sleep_ms(st->dribble_ms);
		max = 1;
	}
	if (atomic_load(&stopping))
		return MHD_CONTENT_READER_END_WITH_ERROR;
	size_t n = st->len - pos < max ? (size_t)(st->len - pos) : max;
	if (st->body) {
		memcpy(out, st->body + pos, n);
	} else {
		for (size_t i = 0; i < n; i++)
			out[i] = stream_byte(pos + i, st->len);
	}
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct stream *st = cls;
	free(st->body);
	free(st);
}

static enum MHD_Result send_reply(struct MHD_Connection *c, struct reply *rp,
				  const struct rate_headers *rh)
{
	struct MHD_Response *resp;
	char num[32];

	if (rp->generated || (rp->dribble_ms && rp->body && rp->len > 0)) {
		struct stream *st = xmalloc(sizeof *st);
		*st = (struct stream){ .body = rp->generated ? NULL : rp->body,
				       .len = rp->generated ? rp->generated : rp->len,
				       .dribble_ms = rp->dribble_ms };
		if (rp->generated)
			free(rp->body);
		rp->body = NULL;
		resp = MHD_create_response_from_callback(rp->chunked ? MHD_SIZE_UNKNOWN : st->len,
							 rp->dribble_ms ? 1 : 64 * 1024,
							 stream_read, st, stream_free);
		if (!resp)
			stream_free(st);
	} else if (rp->body) {
		resp = MHD_create_response_from_buffer(rp->len, rp->body, MHD_RESPMEM_MUST_FREE);
		rp->body = NULL;
	} else {
		resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	}
	if (!resp) {
		free(rp->location);
		rp->location = NULL;
		return MHD_NO;
	}
	if (!rp->bare)
		MHD_add_response_header(resp, "Content-Type", "application/json");
	if (rp->location) {
		MHD_add_response_header(resp, "Location", rp->location);
		free(rp->location);
		rp->location = NULL;
	}
	if (rp->retry_after >= 0) {
		snprintf(num, sizeof num, "%ld", rp->retry_after);
		MHD_add_response_header(resp, "Retry-After", num);
	}
	if (rh && rh->present) {
		snprintf(num, sizeof num, "%u", rh->limit);
		MHD_add_response_header(resp, "X-RateLimit-Limit", num);
		snprintf(num, sizeof num, "%ld", rh->remaining);
		MHD_add_response_header(resp, "X-RateLimit-Remaining", num);
		snprintf(num, sizeof num, "%ld", rh->reset);
		MHD_add_response_header(resp, "X-RateLimit-Reset", num);
	}
	enum MHD_Result ret = MHD_queue_response(c, rp->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* Turns the close that follows MHD_NO into a TCP reset, so the client sees no answer at all. */
static void reset_connection(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	if (info)
		setsockopt(info->connect_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

/* Called on the first access-handler call of a request, once its headers are in. */
static struct request *request_start(struct MHD_Connection *c, const char *method,
				     const char *url)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct request *rq = xmalloc(sizeof *rq);

	*rq = (struct request){ .conn = info ? info->socket_context : NULL };
	rq->uri = xstrdup(rq->conn && rq->conn->uri ? rq->conn->uri : url);
	rq->t_ms = wall_us() / 1000;
	if (strncmp(url, "/_control", 9) == 0 && (url[9] == '/' || url[9] == '\0'))
		return rq;

	pthread_mutex_lock(&state_lock);
	rq->seq = ++platform.next_seq;
	if (platform.nrequests >= REQUESTS_KEPT) {
		size_t drop = platform.nrequests / 4;
		for (size_t i = 0; i < drop; i++)
			free(platform.requests[i].path);
		memmove(platform.requests, platform.requests + drop,
			(platform.nrequests - drop) * sizeof *platform.requests);
		platform.nrequests -= drop;
	}
	GROW(platform.requests, platform.requests_cap, platform.nrequests);
	struct logged_request *lr = &platform.requests[platform.nrequests++];
	*lr = (struct logged_request){ .seq = rq->seq, .path = xstrdup(rq->uri), .t_ms = rq->t_ms };
	snprintf(lr->method, sizeof lr->method, "%s", method);
	pthread_mutex_unlock(&state_lock);
	return rq;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **req_cls)
{
	struct request *rq = *req_cls;

	if (!rq) {
		*req_cls = request_start(c, method, url);
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		/* Keep at most the cap (and one byte to know it was passed); drop the rest. */
		size_t room = BODY_CAP + 1 - rq->body_len, take = *upload_data_size;
		if (take > room)
			take = room;
		if (take > 0) {
			rq->body = xrealloc(rq->body, rq->body_len + take + 1);
			memcpy(rq->body + rq->body_len, upload_data, take);
			rq->body_len += take;
			rq->body[rq->body_len] = '\0';
		}
		if (rq->body_len > BODY_CAP) {
			rq->body_too_big = true;
			rq->body_len = BODY_CAP;
			rq->body[BODY_CAP] = '\0';
		}
		*upload_data_size = 0;
		return MHD_YES;
	}

	struct reply rp = { .status = 500, .retry_after = -1 };
	struct rate_headers rh = { 0 };
	if (rq->seq == 0) {
		pthread_mutex_lock(&state_lock);
		control_handle(c, method, url, rq, &rp);
		pthread_mutex_unlock(&state_lock);
		rq->shutdown = rp.shutdown;
	} else {
		api_handle(c, method, url, rq, &rp, &rh);
	}
	if (rp.reset) {
		free(rp.body);
		free(rp.location);
		reset_connection(c);
		return MHD_NO;
	}
	return send_reply(c, &rp, &rh);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *req_cls;
	if (!rq)
		return;
	if (rq->shutdown)
		kill(getpid(), SIGTERM);
	free(rq->uri);
	free(rq->body);
	free(rq);
	*req_cls = NULL;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *info =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	struct conn *cn = info ? info->socket_context : NULL;
	if (cn) {
		free(cn->uri);
		cn->uri = xstrdup(uri);
	}
	return NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		struct conn *cn = xmalloc(sizeof *cn);
		const union MHD_ConnectionInfo *fd =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		const union MHD_ConnectionInfo *addr =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
		int one = 1;

		*cn = (struct conn){ .ip = "?" };
		if (fd)
			setsockopt(fd->connect_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (addr && addr->client_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)addr->client_addr)->sin_addr,
				  cn->ip, sizeof cn->ip);
		else if (addr && addr->client_addr->sa_family == AF_INET6)
			inet_ntop(AF_INET6,
				  &((struct sockaddr_in6 *)(void *)addr->client_addr)->sin6_addr,
				  cn->ip, sizeof cn->ip);
		*socket_context = cn;
	} else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		struct conn *cn = *socket_context;
		if (cn) {
			free(cn->uri);
			free(cn);
		}
		*socket_context = NULL;
	}
}

/* ---------- start-up ---------- */

static void write_port_file(const char *path, unsigned port)
{
	size_t n = strlen(path) + 32;
	char *tmp = xmalloc(n);
	snprintf(tmp, n, "%s.%ld.tmp", path, (long)getpid());
	FILE *f = fopen(tmp, "w");
	if (!f)
		die("%s: %s", tmp, strerror(errno));
	fprintf(f, "%u\n", port);
	if (fclose(f) != 0 || rename(tmp, path) != 0)
		die("%s: %s", path, strerror(errno));
	free(tmp);
}

static void usage(FILE *to, int code) __attribute__((noreturn));
static void usage(FILE *to, int code)
{
	fputs("usage: fake-platform --port-file FILE [--port N] [--org-id ID]\n"
	      "                     [--rate-limit N_PER_MIN (600; 0 = off)] [--log FILE]\n",
	      to);
	exit(code);
}

static void state_free(void)
{
	for (size_t i = 0; i < platform.nws; i++)
		ws_free(platform.ws[i]);
	free(platform.ws);
	posts_clear();
	free(platform.posts);
	requests_clear();
	free(platform.requests);
	faults_clear();
	free(platform.faults);
	free(platform.buckets);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "port-file", required_argument, NULL, 'p' },
		{ "port", required_argument, NULL, 'P' },
		{ "org-id", required_argument, NULL, 'o' },
		{ "rate-limit", required_argument, NULL, 'r' },
		{ "log", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *port_file = NULL, *log_path = NULL;
	long port = 0, rate = 600;
	int opt;

	while ((opt = getopt_long(argc, argv, "h", options, NULL)) != -1) {
		switch (opt) {
		case 'p': port_file = optarg; break;
		case 'P':
			if (!parse_long(optarg, &port) || port < 0 || port > 65535)
				usage(stderr, 2);
			break;
		case 'o': platform.org_id = optarg; break;
		case 'r':
			if (!parse_long(optarg, &rate) || rate < 0 || rate > 100000000)
				usage(stderr, 2);
			break;
		case 'l': log_path = optarg; break;
		case 'h': usage(stdout, 0);
		default: usage(stderr, 2);
		}
	}
	if (!port_file || optind != argc)
		usage(stderr, 2);
	platform.rate_limit = (unsigned)rate;
	if (log_path) {
		platform.log = fopen(log_path, "a");
		if (!platform.log)
			die("%s: %s", log_path, strerror(errno));
		setvbuf(platform.log, NULL, _IOLBF, 0);
	}

	/* Every thread inherits this mask; the main thread takes the signals with sigwait. */
	sigset_t stop_signals;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
		MHD_USE_AUTO | MHD_USE_ERROR_LOG,
		0, NULL, NULL, on_request, NULL,
		MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
		MHD_OPTION_END);
	if (!d)
		die("cannot listen on 127.0.0.1:%ld", port);
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	if (!info || info->port == 0)
		die("cannot tell the listening port");
	write_port_file(port_file, info->port);

	int sig;
	while (sigwait(&stop_signals, &sig) != 0)
		;
	atomic_store(&stopping, true);
	MHD_stop_daemon(d);
	state_free();
	if (platform.log)
		fclose(platform.log);
	return 0;
}
