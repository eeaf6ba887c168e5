/* store.c: the fake platform's data: workspaces and their tokens, activity rows, recorded posts, the request log. */
#include <config.h>

#include <stdlib.h>
#include <string.h>

#include "fake.h"

const char *const endpoint_names[] = {
	"register", "heartbeat", "activity", "a2a", "notify", "other"
};

pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
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

struct workspace *ws_create(const char *id, char *token)
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

size_t rows_upper_bound(const struct workspace *w, int64_t us)
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
	w->index = xcalloc(cap, sizeof *w->index);
	w->index_cap = cap;
	for (size_t i = 0; i < w->nrows; i++)
		index_put(w, w->rows[i]);
}

long rows_find(const struct workspace *w, const char *id)
{
	if (!w->index_cap)
		return -1;
	for (size_t i = id_hash(id) & (w->index_cap - 1); w->index[i]; i = (i + 1) & (w->index_cap - 1))
		if (strcmp(w->index[i]->id, id) == 0)
			return (long)rows_upper_bound(w, w->index[i]->created_us) - 1;
	return -1;
}

/*
 * created_us < 0 means now (strictly after every row so far); otherwise the row goes
 * to its sorted place, moved on by a microsecond while it would share a timestamp
 * with a row of w.
 */
struct row *row_add(struct workspace *w, const char *source_id, const char *method,
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

	uuid_new(r->id);
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
	r->json = json_dump(o, &r->json_len);

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

void rows_remove(struct workspace *w, size_t from, size_t n)
{
	if (n == 0)
		return;
	for (size_t i = from; i < from + n; i++)
		row_free(w->rows[i]);
	memmove(w->rows + from, w->rows + from + n, (w->nrows - from - n) * sizeof *w->rows);
	w->nrows -= n;
	index_rebuild(w, w->nrows);
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
	*lr = (struct logged_request){ .seq = ++platform.next_seq, .path = xstrdup(path),
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
	free(platform.buckets);
}
