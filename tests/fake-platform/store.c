/* store.c: the fake platform's data: workspaces and their tokens, activity rows, recorded posts, the request log. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "fake.h"

const char *const endpoint_names[] = {
	"register", "heartbeat", "activity", "a2a", "notify", "ack", "workspace", "events",
	"upload", "upload_ack", "health", "other"
};

bool endpoint_is_post(enum endpoint ep)
{
	return ep == EP_REGISTER || ep == EP_HEARTBEAT || ep == EP_A2A || ep == EP_NOTIFY ||
	       ep == EP_ACK || ep == EP_UPLOAD_ACK;
}

pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t state_changed = PTHREAD_COND_INITIALIZER;
atomic_bool stopping;
struct platform platform;

char *new_token(void)
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

struct workspace *ws_find(const char *id)
{
	for (size_t i = 0; i < platform.nws; i++)
		if (strcmp(platform.ws[i]->id, id) == 0)
			return platform.ws[i];
	return NULL;
}

struct workspace *ws_by_token(const char *token)
{
	for (size_t i = 0; i < platform.nws; i++)
		if (platform.ws[i]->token && strcmp(platform.ws[i]->token, token) == 0)
			return platform.ws[i];
	return NULL;
}

struct workspace *ws_create(const char *id, char *token)
{
	struct workspace *w = xmalloc(sizeof *w);
	*w = (struct workspace){
		.id = xstrdup(id), .token = token,
		.agent_card = jv_null(), .last_heartbeat = jv_null(),
		.last_heartbeat_ms = -1, .last_alive_ms = now_ms(), .awaiting = true,
		.talk_to_user = true, .removed_ns = -1, .last_acked_seq = -1,
	};
	GROW(platform.ws, platform.ws_cap, platform.nws);
	platform.ws[platform.nws++] = w;
	return w;
}

static void row_free(struct row *r)
{
	free(r->source_id);
	free(r->message_id);
	free(r->attachments);
	free(r->json);
	free(r);
}

static void ws_free(struct workspace *w)
{
	for (size_t i = 0; i < w->nrows; i++)
		row_free(w->rows[i]);
	free(w->rows);
	free(w->by_id.slots);
	free(w->by_message_id.slots);
	uploads_free(w);
	free(w->id);
	free(w->token);
	free(w->name);
	free(w->role);
	free(w->delivery_mode);
	jv_free(w->agent_card);
	jv_free(w->last_heartbeat);
	free(w);
}

/* a before b in the activity order: (created_ns, seq). */
static bool row_key_less(int64_t a_ns, uint64_t a_seq, int64_t b_ns, uint64_t b_seq)
{
	return a_ns < b_ns || (a_ns == b_ns && a_seq < b_seq);
}

size_t rows_upper_bound(const struct workspace *w, int64_t ns, uint64_t seq)
{
	size_t lo = 0, hi = w->nrows;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (!row_key_less(ns, seq, w->rows[mid]->created_ns, w->rows[mid]->seq))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The indexes, so that a cursor or a messageId is found without a scan of a long backlog. */
typedef const char *(*row_key)(const struct row *r);

static const char *key_id(const struct row *r)
{
	return r->id;
}

static const char *key_message_id(const struct row *r)
{
	return r->message_id;
}

static size_t key_hash(const char *key)
{
	uint64_t h = 1469598103934665603u; /* FNV-1a */
	for (const unsigned char *p = (const unsigned char *)key; *p; p++)
		h = (h ^ *p) * 1099511628211u;
	return (size_t)h;
}

static void index_put(struct row_index *ix, row_key key, struct row *r)
{
	if (!key(r))
		return;
	size_t i = key_hash(key(r)) & (ix->cap - 1);
	while (ix->slots[i])
		i = (i + 1) & (ix->cap - 1);
	ix->slots[i] = r;
}

/* Rebuilt whole when it would be more than half full and after rows are removed. */
static void index_rebuild(struct row_index *ix, row_key key, const struct workspace *w)
{
	size_t cap = 64;
	while (cap < 2 * w->nrows)
		cap *= 2;
	free(ix->slots);
	ix->slots = xcalloc(cap, sizeof *ix->slots);
	ix->cap = cap;
	for (size_t i = 0; i < w->nrows; i++)
		index_put(ix, key, w->rows[i]);
}

static struct row *index_get(const struct row_index *ix, row_key key, const char *k)
{
	if (!ix->cap)
		return NULL;
	for (size_t i = key_hash(k) & (ix->cap - 1); ix->slots[i]; i = (i + 1) & (ix->cap - 1))
		if (strcmp(key(ix->slots[i]), k) == 0)
			return ix->slots[i];
	return NULL;
}

static void indexes_rebuild(struct workspace *w)
{
	index_rebuild(&w->by_id, key_id, w);
	index_rebuild(&w->by_message_id, key_message_id, w);
}

long rows_find(const struct workspace *w, const char *id)
{
	const struct row *r = index_get(&w->by_id, key_id, id);
	return r ? (long)rows_upper_bound(w, r->created_ns, r->seq) - 1 : -1;
}

struct row *rows_find_message(const struct workspace *w, const char *message_id)
{
	return index_get(&w->by_message_id, key_message_id, message_id);
}

/* params.message.messageId of a request body (borrowed), as a new string, or NULL. */
static char *body_message_id(jv body)
{
	jv params = json_field(body, "params");
	jv message = json_field(params, "message");
	char *id = json_string_dup(message, "messageId");
	jv_free(message);
	jv_free(params);
	return id;
}

struct row *row_add(struct workspace *w, const char *source_id, const char *method,
		    jv request_body, int64_t created_ns)
{
	struct row *r = xmalloc(sizeof *r);
	char created_at[40];

	if (created_ns < 0) {
		/* Microseconds, as the platform's database keeps them. */
		created_ns = wall_ns() / 1000 * 1000;
		if (created_ns <= platform.last_created_ns)
			created_ns = platform.last_created_ns + 1000;
	}
	if (created_ns > platform.last_created_ns)
		platform.last_created_ns = created_ns;

	*r = (struct row){
		.seq = ++platform.next_row_seq, .created_ns = created_ns,
		.source_id = source_id ? xstrdup(source_id) : NULL,
	};
	uuid_new(r->id);
	format_rfc3339(created_ns, created_at);
	if (jv_is_valid(request_body)) {
		r->message_id = body_message_id(request_body);
		r->attachments = row_attachments(request_body);
		events_row_logged(w, r, method, request_body);
	} else {
		events_row_logged(w, r, method, jv_null());
	}

	jv o = jv_object();
	o = jv_object_set(o, jv_string("id"), jv_string(r->id));
	o = jv_object_set(o, jv_string("seq"), jv_number((double)r->seq));
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
	r->json = json_dump(o, &r->json_len);

	size_t pos = rows_upper_bound(w, r->created_ns, r->seq);
	GROW(w->rows, w->cap, w->nrows);
	memmove(w->rows + pos + 1, w->rows + pos, (w->nrows - pos) * sizeof *w->rows);
	w->rows[pos] = r;
	w->nrows++;
	if (2 * w->nrows > w->by_id.cap) {
		indexes_rebuild(w);
	} else {
		index_put(&w->by_id, key_id, r);
		index_put(&w->by_message_id, key_message_id, r);
	}
	return r;
}

void rows_remove(struct workspace *w, size_t from, size_t n)
{
	if (n == 0)
		return;
	for (size_t i = from; i < from + n; i++)
		row_free(w->rows[i]);
	memmove(w->rows + from, w->rows + from + n, (w->nrows - from - n) * sizeof *w->rows);
	w->nrows -= n;
	indexes_rebuild(w);
}

static void post_free(struct post *p)
{
	free(p->path);
	free(p->workspace_id);
	jv_free(p->headers);
	jv_free(p->body);
}

void posts_add(struct post p)
{
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
	platform.posts[platform.nposts++] = p;
}

void posts_clear(void)
{
	for (size_t i = 0; i < platform.nposts; i++)
		post_free(&platform.posts[i]);
	platform.nposts = 0;
}

uint64_t requests_log(const char *method, const char *path, int64_t t_ms)
{
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
	*lr = (struct logged_request){ .seq = ++platform.next_request_seq, .path = xstrdup(path),
				       .t_ms = t_ms };
	snprintf(lr->method, sizeof lr->method, "%s", method);
	return lr->seq;
}

/* Fills in the status of a request logged on arrival, unless the log was cleared since. */
void requests_set_status(uint64_t seq, unsigned status)
{
	size_t lo = 0, hi = platform.nrequests;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (platform.requests[mid].seq < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo < platform.nrequests && platform.requests[lo].seq == seq)
		platform.requests[lo].status = status;
}

void requests_clear(void)
{
	for (size_t i = 0; i < platform.nrequests; i++)
		free(platform.requests[i].path);
	platform.nrequests = 0;
}

void store_free(void)
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
	buckets_clear();
	free(platform.buckets);
}
