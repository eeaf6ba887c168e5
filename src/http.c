/* http.c: libcurl multi plumbing: requests and streams, retries, Retry-After, rate-limit headers, caps. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>
#include <fcntl.h>
#include <time.h>
#include "curlsock.h"
#include "http.h"
#include "log.h"
#include "util.h"

/* An answer this large or larger is refused: a hostile or broken platform must
 * not be able to make the bridge allocate without bound. */
#define MAX_ANSWER (64u << 20)
#define EASY_SPARE 8
#define CONNECT_TIMEOUT_MS 10000L
#define STREAM_ERROR_MAX (64u << 10)     /* of a refused stream's answer, kept to say why */
#define STREAM_KEEPIDLE_S 30L            /* a silent stream's connection is probed after this, */
#define STREAM_KEEPINTVL_S 15L           /* then this often, until the kernel gives up on it */

struct http_req {
	struct http_req *next, *prev;
	struct http *h;
	CURL *easy;               /* NULL while waiting to (re)start */
	struct curl_slist *headers;
	char *method, *path, *url, *body;
	size_t body_len;
	bool as_workspace;
	bool parked;              /* the answer hook holds it: never started again */
	unsigned token_gen;       /* the token its headers carry */
	int attempts, max_attempts;
	int64_t start_at;
	long timeout_ms;
	http_retry_fn retry;
	http_failed_fn failed;
	http_sink_fn sink;
	http_done_fn done;
	http_data_fn stream;
	void *ctx;
	struct buf answer;
	bool too_large;
	long retry_after_s;       /* from the last answer, -1 when absent */
	struct http_rate rate;    /* the rate-limit headers of the answer being read */
	bool rate_seen;
	char errbuf[CURL_ERROR_SIZE];
	char redirect[256];       /* "redirect to URL (not followed)" for a 3xx answer */
};

struct http {
	CURLM *multi;
	char *api_url, *workspace_id, *org_id;
	char *auth_header;        /* "Authorization: Bearer ..." or NULL */
	unsigned token_gen;       /* counts token changes */
	http_answer_hook_fn hook;
	void *hook_ctx;
	struct http_req *reqs;    /* every request not yet finished */
	int64_t paused_until;
	unsigned long completed;  /* done callbacks made so far */
	CURL *spare[EASY_SPARE];  /* finished handles, reset and used again */
	int nspare;
	http_rate_fn rate_fn;
	void *rate_ctx;
	struct curlsock socks;    /* polled by the caller (http_watch, http_ready) */
};

static void req_unlink(struct http *h, struct http_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		h->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
}

static void req_free(struct http_req *r)
{
	if (r->easy) {
		curl_multi_remove_handle(r->h->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->headers);
	free(r->method);
	free(r->path);
	free(r->url);
	free(r->body);
	buf_free(&r->answer);
	free(r);
}

struct http *http_new(const char *api_url, const char *workspace_id, const char *org_id)
{
	struct http *h = xcalloc(1, sizeof *h);
	h->multi = curl_multi_init();
	if (!h->multi)
		fatal(1, "cannot initialise libcurl");
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
	curlsock_init(&h->socks, h->multi);
	h->api_url = xstrdup(api_url);
	h->workspace_id = xstrdup(workspace_id);
	h->org_id = org_id ? xstrdup(org_id) : NULL;
	return h;
}

void http_free(struct http *h)
{
	if (!h)
		return;
	while (h->reqs) {
		struct http_req *r = h->reqs;
		req_unlink(h, r);
		req_free(r);
	}
	while (h->nspare)
		curl_easy_cleanup(h->spare[--h->nspare]);
	curl_multi_cleanup(h->multi);
	curlsock_free(&h->socks);
	free(h->api_url);
	free(h->workspace_id);
	free(h->org_id);
	if (h->auth_header) {
		/* The header holds the token: do not leave it in freed memory. */
		memset(h->auth_header, 0, strlen(h->auth_header));
		free(h->auth_header);
	}
	free(h);
}

void http_set_token(struct http *h, const char *token)
{
	if (h->auth_header) {
		memset(h->auth_header, 0, strlen(h->auth_header));
		free(h->auth_header);
	}
	h->auth_header = token ? xasprintf("Authorization: Bearer %s", token) : NULL;
	h->token_gen++;
}

void http_set_answer_hook(struct http *h, http_answer_hook_fn fn, void *ctx)
{
	h->hook = fn;
	h->hook_ctx = ctx;
}

void http_on_rate(struct http *h, http_rate_fn fn, void *ctx)
{
	h->rate_fn = fn;
	h->rate_ctx = ctx;
}

unsigned long http_completed(struct http *h) { return h->completed; }

int http_active(const struct http *h)
{
	int n = 0;
	for (const struct http_req *r = h->reqs; r; r = r->next)
		if (r->easy)
			n++;
	return n;
}

bool http_transient(const struct http_resp *r)
{
	/* A redirect is never followed (the token would go with it), but it is no
	 * refusal either: a proxy sending everything to a maintenance page, say.
	 * Tried again like a network error, so a reply is not lost to it. */
	return r->status == 0 || (r->status >= 300 && r->status < 400) || r->status == 408 ||
	       r->status == 429 || r->status >= 500;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
	struct http_req *r = userp;
	size_t len = size * n;
	if (r->sink) {
		long status = 0;
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200 && status < 300)
			return r->sink(r->ctx, data, len) ? len : 0;
	}
	/* The answer and the NUL kept after it fit in the cap, so the buffer never
	 * doubles past it. */
	if (r->answer.len + len >= MAX_ANSWER) {
		r->too_large = true;
		return 0; /* aborts the transfer */
	}
	buf_append(&r->answer, data, len);
	return len;
}

/* A stream's body goes to its callback once the answer is a 2xx; the body of
 * any other answer is kept (bounded) to say why it was refused. */
static size_t on_stream_body(char *data, size_t size, size_t n, void *userp)
{
	struct http_req *r = userp;
	size_t len = size * n;
	long status = 0;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 200 && status < 300) {
		r->stream(r->ctx, data, len);
		return len;
	}
	if (r->answer.len + len < STREAM_ERROR_MAX)
		buf_append(&r->answer, data, len);
	return len;
}

/* The value of header `name:` (lower case, with its colon) in the line data, or NULL. */
static const char *header_value(const char *data, size_t len, const char *name, size_t name_len,
				const char **end)
{
	if (len <= name_len || strncasecmp(data, name, name_len) != 0)
		return NULL;
	const char *p = data + name_len, *e = data + len;
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	while (e > p && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t'))
		e--;
	*end = e;
	return p;
}

/* Delta-seconds and counts: digits only, capped at max; -1 when it is not one. */
static long header_number(const char *p, const char *end, long max)
{
	long v = 0;
	if (p == end)
		return -1;
	for (; p < end; p++) {
		if (!isdigit((unsigned char)*p))
			return -1;
		if (v < max)
			v = v * 10 + (*p - '0');
	}
	return v > max ? max : v;
}

#define HEADER(lit) lit, sizeof lit - 1

/* -vv: every request as it ends (and a stream as it opens), by method and path
 * only: the token travels in a header, never in a path. */
static void trace_answer(struct http_req *r, const struct http_resp *resp)
{
	curl_off_t us = 0, got = 0;
	curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &us);
	curl_easy_getinfo(r->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
	char outcome[64];
	if (resp->status)
		snprintf(outcome, sizeof outcome, "HTTP %ld", resp->status);
	log_msg(LV_TRACE, "request: %s %s: %s%s, %lld ms, %zu bytes sent, %lld received", r->method, r->path,
		resp->status ? outcome : "no answer: ", resp->status ? "" : resp->error ? resp->error : "failed",
		(long long)(us / 1000), r->body_len, (long long)got);
}

static void trace_stream_open(struct http_req *r)
{
	long status = 0;
	curl_off_t us = 0;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(r->easy, CURLINFO_STARTTRANSFER_TIME_T, &us);
	if (status >= 200 && status < 300)
		log_msg(LV_TRACE, "request: %s %s: HTTP %ld, stream open after %lld ms", r->method, r->path, status,
			(long long)(us / 1000));
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
	struct http_req *r = userp;
	size_t len = size * n;
	const char *v, *end;
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		/* A new answer (after a 100 Continue, say): its own headers. */
		r->rate = (struct http_rate){ .limit = -1, .remaining = -1, .reset_s = -1 };
		r->rate_seen = false;
	} else if ((v = header_value(data, len, HEADER("retry-after:"), &end))) {
		/* Only delta-seconds: an HTTP-date falls back to our own backoff. A
		 * window in its last second says 0: wait that second, not less. */
		long s = header_number(v, end, 86400);
		if (s >= 0)
			r->retry_after_s = s > 3600 ? 3600 : s < 1 ? 1 : s;
	} else if ((v = header_value(data, len, HEADER("x-ratelimit-limit:"), &end))) {
		r->rate_seen = true;
		r->rate.unlimited = (size_t)(end - v) == 9 && strncasecmp(v, "unlimited", 9) == 0;
		r->rate.limit = header_number(v, end, 1000000000L);
	} else if ((v = header_value(data, len, HEADER("x-ratelimit-remaining:"), &end))) {
		r->rate_seen = true;
		r->rate.remaining = header_number(v, end, 1000000000L);
	} else if ((v = header_value(data, len, HEADER("x-ratelimit-reset:"), &end))) {
		r->rate_seen = true;
		r->rate.reset_s = header_number(v, end, 86400);
	} else if ((len == 2 && data[0] == '\r') || (len == 1 && data[0] == '\n')) {
		/* The end of the headers: a stream's come long before its end. */
		if (r->stream && log_enabled(LV_TRACE))
			trace_stream_open(r);
		if (r->rate_seen && r->h->rate_fn) {
			curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->rate.status);
			r->h->rate_fn(r->h->rate_ctx, &r->rate);
		}
		r->rate_seen = false;
	}
	return len;
}

/* Every socket close-on-exec: a handler started later must not hold it. */
static int on_socket(void *clientp, curl_socket_t fd, curlsocktype purpose)
{
	(void)clientp;
	(void)purpose;
	fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC);
	return CURL_SOCKOPT_OK;
}

static void req_launch(struct http *h, struct http_req *r)
{
	/* A finished handle, reset, costs less than a new one at every poll. */
	CURL *e = h->nspare ? h->spare[--h->nspare] : curl_easy_init();
	if (!e)
		fatal(1, "cannot create a libcurl handle");
	curl_easy_reset(e);
	r->easy = e;
	r->attempts++;
	r->too_large = false;
	r->retry_after_s = -1;
	r->errbuf[0] = '\0';
	r->answer.len = 0;
	if (r->answer.p)
		r->answer.p[0] = '\0';

	if (r->headers && r->token_gen != h->token_gen) {
		/* The token changed since: the next attempt carries the new one. */
		curl_slist_free_all(r->headers);
		r->headers = NULL;
	}
	if (!r->headers) {
		struct curl_slist *hd = NULL;
		r->token_gen = h->token_gen;
		if (h->auth_header)
			hd = curl_slist_append(hd, h->auth_header);
		if (r->body)
			hd = curl_slist_append(hd, "Content-Type: application/json");
		hd = curl_slist_append(hd, r->stream ? "Accept: text/event-stream" : "Accept: application/json");
		/* No "Expect: 100-continue" round trip before larger bodies. */
		hd = curl_slist_append(hd, "Expect:");
		if (r->as_workspace) {
			char *x = xasprintf("X-Workspace-ID: %s", h->workspace_id);
			hd = curl_slist_append(hd, x);
			free(x);
		}
		if (h->org_id) {
			char *x = xasprintf("X-Molecule-Org-Id: %s", h->org_id);
			hd = curl_slist_append(hd, x);
			free(x);
		}
		r->headers = hd;
	}
	curl_easy_setopt(e, CURLOPT_URL, r->url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, r->stream ? on_stream_body : on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
	if (r->stream) {
		/* Silence is normal on a stream: no deadline, no speed limit. A peer
		 * that went away is found by keepalive probes instead. */
		curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, STREAM_KEEPIDLE_S);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, STREAM_KEEPINTVL_S);
	} else {
		/* A sink takes large bodies: their time and size are its own to bound. */
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->sink ? 0L : r->timeout_ms);
		/* An answer that announces the cap or more is refused before its body is read. */
		if (!r->sink)
			curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)MAX_ANSWER - 1);
		/* A server that dribbles its answer is cut off instead of holding a slot. */
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 16L);
		curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 15L);
	}
	/* Never follow a redirect: the token must not travel to another host. */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_SOCKOPTFUNCTION, on_socket);
	if (r->body) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	} else if (strcmp(r->method, "GET") != 0) {
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
	}
	CURLMcode mc = curl_multi_add_handle(h->multi, e);
	if (mc != CURLM_OK)
		fatal(1, "libcurl: %s", curl_multi_strerror(mc));
}

struct http_req *http_start(struct http *h, const struct http_opts *o)
{
	struct http_req *r = xcalloc(1, sizeof *r);
	r->h = h;
	r->method = xstrdup(o->method);
	r->path = xstrdup(o->path);
	r->url = xasprintf("%s%s", h->api_url, o->path);
	if (o->body) {
		r->body = xmalloc(o->body_len + 1);
		memcpy(r->body, o->body, o->body_len);
		r->body[o->body_len] = '\0';
		r->body_len = o->body_len;
	}
	r->as_workspace = o->as_workspace;
	r->max_attempts = o->max_attempts;
	r->retry = o->retry ? o->retry : http_transient;
	r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : HTTP_TIMEOUT_MS;
	r->failed = o->failed;
	r->sink = o->sink;
	r->done = o->done;
	r->stream = o->stream;
	r->ctx = o->ctx;
	r->start_at = 0; /* as soon as the pause (if any) allows */
	r->next = h->reqs;
	if (h->reqs)
		h->reqs->prev = r;
	h->reqs = r;
	return r;
}

void http_cancel(struct http *h, struct http_req *r)
{
	if (!r)
		return;
	req_unlink(h, r);
	req_free(r);
}

int64_t http_next_due(struct http *h, int64_t now)
{
	int64_t best = -1;
	for (struct http_req *r = h->reqs; r; r = r->next) {
		if (r->easy || r->parked)
			continue;
		int64_t at = r->start_at > h->paused_until ? r->start_at : h->paused_until;
		int64_t d = at > now ? at - now : 0;
		if (best < 0 || d < best)
			best = d;
	}
	if (h->socks.due >= 0) {
		int64_t d = h->socks.due > now ? h->socks.due - now : 0;
		if (best < 0 || d < best)
			best = d;
	}
	return best;
}

/* Where a 3xx answer points, for the log: printable ASCII, cut to fit r->redirect.
 * A hostile platform chooses it, so it is never more than a short hint. */
static void describe_redirect(struct http_req *r)
{
	static const char head[] = "redirect to ", tail[] = " (not followed)";
	char *to = NULL, *o = r->redirect;
	if (curl_easy_getinfo(r->easy, CURLINFO_REDIRECT_URL, &to) != CURLE_OK || !to || !*to) {
		snprintf(r->redirect, sizeof r->redirect, "redirect (not followed)");
		return;
	}
	size_t room = sizeof r->redirect - (sizeof head - 1) - (sizeof tail - 1) - 1;
	size_t n = strlen(to);
	bool cut = n > room;
	if (cut)
		n = room - 3;
	memcpy(o, head, sizeof head - 1);
	o += sizeof head - 1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)to[i];
		*o++ = c > 0x20 && c < 0x7f ? (char)c : '?';
	}
	if (cut) {
		memcpy(o, "...", 3);
		o += 3;
	}
	memcpy(o, tail, sizeof tail); /* with its NUL */
}

static void finish(struct http *h, struct http_req *r, CURLcode cc)
{
	struct http_resp resp = { 0 };
	long status = 0;
	if (cc == CURLE_OK)
		curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	resp.status = status;
	resp.body = r->answer.p ? r->answer.p : "";
	resp.len = r->answer.len;
	resp.attempts = r->attempts;
	resp.stale_token = r->token_gen != h->token_gen;
	if (r->too_large || cc == CURLE_FILESIZE_EXCEEDED) {
		resp.error = "answer too large (64 MiB or more)";
		resp.too_large = true;
	} else if (cc != CURLE_OK) {
		resp.error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(cc);
	} else if (status >= 300 && status < 400) {
		/* With a status, error says where the redirect pointed. */
		describe_redirect(r);
		resp.error = r->redirect;
	}
	if (log_enabled(LV_TRACE))
		trace_answer(r, &resp);
	curl_multi_remove_handle(h->multi, r->easy);
	if (h->nspare < EASY_SPARE)
		h->spare[h->nspare++] = r->easy;
	else
		curl_easy_cleanup(r->easy);
	r->easy = NULL;

	if (h->hook && h->hook(h->hook_ctx, r->method, r->path, &resp)) {
		r->parked = true;
		return;
	}
	int64_t now = now_ms();
	/* The clock counts whole milliseconds: one more, so that a wait of N
	 * seconds never ends a fraction of a millisecond early. */
	int64_t retry_after_ms = r->retry_after_s >= 0 ? r->retry_after_s * 1000 + 1 : -1;
	if (status == 429 || (status == 503 && r->retry_after_s >= 0)) {
		/* The platform's rate limit is per client: everything waits. */
		int64_t wait = retry_after_ms >= 0 ? retry_after_ms : 1000;
		if (status == 429 && now + wait > h->paused_until)
			h->paused_until = now + wait;
		if (status == 503)
			r->start_at = now + wait;
	}
	bool again = r->retry(&resp) && (r->max_attempts == 0 || r->attempts < r->max_attempts);
	if (again) {
		int64_t delay = backoff_ms(r->attempts, 250, 30000);
		if (retry_after_ms > delay)
			delay = retry_after_ms;
		r->start_at = now + delay;
		/* Say so once, then now and again, not on every attempt. */
		enum log_level lv = r->attempts == 1 || r->attempts % 10 == 0 ? LV_WARN : LV_DEBUG;
		if (log_enabled(lv) && status)
			log_msg(lv, "%s %s: HTTP %ld%s%s, attempt %d, retrying in %lld ms", r->method,
				  r->url, status, resp.error ? ", " : "", resp.error ? resp.error : "",
				  r->attempts, (long long)delay);
		else if (log_enabled(lv))
			log_msg(lv, "%s %s: %s, attempt %d, retrying in %lld ms", r->method, r->url,
				  resp.error, r->attempts, (long long)delay);
		/* Last: the callback may start other requests. */
		if (r->failed)
			r->failed(r->ctx, &resp);
		return;
	}
	req_unlink(h, r);
	h->completed++;
	if (r->done)
		r->done(r->ctx, &resp);
	req_free(r);
}

void http_watch(struct http *h, http_watch_fn add, void *ctx)
{
	curlsock_watch(&h->socks, add, ctx);
}

void http_ready(struct http *h, int fd, short revents)
{
	curlsock_ready(&h->socks, fd, revents);
}

int http_wait(struct http *h, int64_t timeout_ms)
{
	return curlsock_wait(&h->socks, timeout_ms);
}

void http_process(struct http *h, int64_t now)
{
	if (now >= h->paused_until) {
		for (struct http_req *r = h->reqs; r; r = r->next)
			if (!r->easy && !r->parked && r->start_at <= now)
				req_launch(h, r);
	}
	curlsock_drive(&h->socks);
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(h->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct http_req *r = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		/* finish() may call back into http_start: the message list stays valid. */
		finish(h, r, m->data.result);
	}
}
